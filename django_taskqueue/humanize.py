"""Figures written for people: rates to two significant figures, ages and durations in words."""

from __future__ import annotations

import math

from django.utils.translation import ngettext


def significant(value: float, figures: int = 2) -> str:
    """Return `value` rounded to `figures` significant figures, without an exponent."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    decimals = figures - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    if decimals <= 0:
        return f"{int(rounded):,}"
    return f"{rounded:.{decimals}f}".rstrip("0").rstrip(".")  # "5/s", not "5.0/s"


def rate(per_second: float | None) -> str:
    """Return a rate of tasks as "4.7/s", "12/min" or "0.17/h" (the unit that reads best)."""
    if per_second is None:
        return "-"
    if per_second == 0:
        return "0/s"
    for unit, factor in (("s", 1), ("min", 60)):
        if per_second * factor >= 0.95:
            return f"{significant(per_second * factor)}/{unit}"
    return f"{significant(per_second * 3600)}/h"


def duration(seconds: float | None) -> str:
    """Return a run time: "850 ms", "2.3 s", "4 min 10 s"."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{significant(seconds * 1000)} ms"
    if seconds < 60:
        return f"{significant(seconds)} s"
    return age(seconds)


def age(seconds: float | None) -> str:
    """Return an age in words, to the two largest units: "45 seconds", "3 hours 5 minutes"."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    units = (
        (86400, lambda n: ngettext("%d day", "%d days", n)),
        (3600, lambda n: ngettext("%d hour", "%d hours", n)),
        (60, lambda n: ngettext("%d minute", "%d minutes", n)),
        (1, lambda n: ngettext("%d second", "%d seconds", n)),
    )
    parts: list[str] = []
    for size, word in units:
        if seconds >= size or (size == 1 and not parts):
            count, seconds = divmod(seconds, size)
            parts.append(word(count) % count)
            if len(parts) == 2:
                break
        elif parts:
            break  # "2 hours", never "2 hours 0 minutes" or "2 hours 5 seconds"
    return " ".join(parts)


def count(value: int | None) -> str:
    """Return a count with thousands separators ("12,345"), "-" for None."""
    return "-" if value is None else f"{value:,}"
