"""The upload scenario's parser: a CSV of sales lines, summed by region and by product."""

import csv
import io
import random
from decimal import Decimal, InvalidOperation

COLUMNS = ["date", "region", "product", "units", "unit_price"]


class ParseError(ValueError):
    """The file is not a sales CSV; the message says where and why."""


def parse_sales(data: bytes) -> dict:
    """Return the totals of a sales CSV; raise ParseError at the first line that is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ParseError(f"the file is not UTF-8 text (byte {e.start})") from e
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or [name.strip() for name in reader.fieldnames] != COLUMNS:
        raise ParseError(f"line 1: the header must be {','.join(COLUMNS)}")
    revenue_by_region: dict[str, Decimal] = {}
    units_by_product: dict[str, int] = {}
    rows = 0
    for row in reader:
        line = reader.line_num
        try:
            units = int(row["units"])
        except (TypeError, ValueError):
            raise ParseError(f"line {line}: units {row['units']!r} is not a whole number") from None
        try:
            price = Decimal(row["unit_price"])
        except (TypeError, InvalidOperation):
            raise ParseError(
                f"line {line}: unit_price {row['unit_price']!r} is not a number"
            ) from None
        region = row["region"]
        revenue_by_region[region] = revenue_by_region.get(region, Decimal(0)) + units * price
        units_by_product[row["product"]] = units_by_product.get(row["product"], 0) + units
        rows += 1
    if not rows:
        raise ParseError("the file has a header and no sales lines")
    top_products = sorted(units_by_product.items(), key=lambda item: (-item[1], item[0]))[:5]
    return {
        "rows": rows,
        "revenue": str(sum(revenue_by_region.values(), Decimal(0))),
        "revenue_by_region": {
            region: str(amount) for region, amount in sorted(revenue_by_region.items())
        },
        "top_products": [{"product": name, "units": units} for name, units in top_products],
    }


def sample_sales(rows: int = 3000, broken_line: int | None = None, seed: int = 7) -> bytes:
    """Return a sales CSV of `rows` lines; `broken_line` makes that line's units unreadable."""
    chooser = random.Random(seed)
    regions = ["North", "South", "East", "West"]
    products = ["kettle", "toaster", "blender", "mixer", "grinder", "juicer", "scale"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for index in range(rows):
        units: int | str = chooser.randint(1, 20)
        if broken_line is not None and index + 2 == broken_line:
            units = "twelve"
        writer.writerow(
            [
                f"2025-{chooser.randint(1, 12):02}-{chooser.randint(1, 28):02}",
                chooser.choice(regions),
                chooser.choice(products),
                units,
                f"{chooser.randint(500, 9999) / 100:.2f}",
            ]
        )
    return out.getvalue().encode()
