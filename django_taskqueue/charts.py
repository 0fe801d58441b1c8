"""Charts of the admin dashboard, drawn on the server as inline SVG (no script, no CDN).

Colours are CSS classes (`tq-succeeded`, `tq-failed`, …) that the dashboard's stylesheet maps to
the admin's CSS variables, so a chart follows the admin's light and dark themes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Slot:
    """One bar of an outcome chart: attempts in one minute or hour, and their label."""

    label: str
    executed: int = 0
    failed: int = 0
    retried: int = 0

    @property
    def succeeded(self) -> int:
        return max(0, self.executed - self.failed - self.retried)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def outcome_bars(
    slots: Sequence[Slot],
    *,
    width: int = 180,
    height: int = 32,
    title: str = "",
    axis: bool = False,
) -> SafeString:
    """Return stacked bars per slot: succeeded, retried and failed attempts."""
    peak = max((s.executed for s in slots), default=0)
    top = 16 if axis else 0
    plot = height - top - (18 if axis else 0)
    n = max(len(slots), 1)
    step = width / n
    gap = step * 0.15 if step > 3 else 0
    parts: list[str] = []
    for i, slot in enumerate(slots):
        x = i * step
        y = float(top + plot)
        shares = (
            ("tq-succeeded", slot.succeeded),
            ("tq-retried", slot.retried),
            ("tq-failed", slot.failed),
        )
        for css, value in shares:
            if not value or not peak:
                continue
            h = max(plot * value / peak, 1.0)
            y -= h
            parts.append(
                f'<rect class="{css}" x="{_num(x)}" y="{_num(y)}" '
                f'width="{_num(max(step - gap, 0.5))}" height="{_num(h)}"/>'
            )
        tip = f"{slot.label}: {slot.executed} run, {slot.retried} retried, {slot.failed} failed"
        parts.append(
            f'<rect class="tq-hit" x="{_num(x)}" y="0" width="{_num(step)}" height="{height}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    return _svg(parts, slots, width, height, title, peak, axis, top, plot)


def line(
    values: Sequence[int | None],
    labels: Sequence[str],
    *,
    width: int = 180,
    height: int = 32,
    title: str = "",
    axis: bool = False,
) -> SafeString:
    """Return a line with its area below (the backlog); None leaves a gap (no sample)."""
    peak = max((v for v in values if v is not None), default=0)
    top = 16 if axis else 1
    plot = height - top - (18 if axis else 1)
    n = len(values)
    step = width / max(n - 1, 1)
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        y = top + plot - (plot * value / peak if peak else 0)
        runs[-1].append((i * step, y))
    parts: list[str] = []
    base = top + plot
    for run in runs:
        if not run:
            continue
        if len(run) == 1:
            x, y = run[0]
            run = [(max(x - step / 2, 0), y), (min(x + step / 2, width), y)]
        points = " ".join(f"{_num(x)},{_num(y)}" for x, y in run)
        area = f"{_num(run[0][0])},{base} {points} {_num(run[-1][0])},{base}"
        parts.append(f'<polygon class="tq-area" points="{area}"/>')
        parts.append(f'<polyline class="tq-line" points="{points}"/>')
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        tip = f"{label}: {'no sample' if value is None else value}"
        x = max(i * step - step / 2, 0)
        parts.append(
            f'<rect class="tq-hit" x="{_num(x)}" y="0" width="{_num(step)}" height="{height}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    slots = [Slot(label) for label in labels]
    return _svg(parts, slots, width, height, title, peak, axis, top, plot)


def _svg(
    parts: list[str],
    slots: Sequence[Slot],
    width: int,
    height: int,
    title: str,
    peak: int,
    axis: bool,
    top: int,
    plot: int,
) -> SafeString:
    if axis:
        base = top + plot
        parts.insert(0, f'<line class="tq-grid" x1="0" y1="{top}" x2="{width}" y2="{top}"/>')
        parts.insert(0, f'<line class="tq-axis" x1="0" y1="{base}" x2="{width}" y2="{base}"/>')
        parts.append(f'<text class="tq-label" x="2" y="{top - 3}">{peak:,}</text>')
        if slots:
            parts.append(
                f'<text class="tq-label" x="0" y="{height - 3}">{escape(slots[0].label)}</text>'
            )
            parts.append(
                f'<text class="tq-label" x="{width}" y="{height - 3}" text-anchor="end">'
                f"{escape(slots[-1].label)}</text>"
            )
    body = mark_safe("".join(parts))  # built above from numbers and escaped labels
    return format_html(
        '<svg class="tq-chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="{}" data-peak="{}" preserveAspectRatio="{}"><title>{}</title>{}</svg>',
        width,
        height,
        width,
        height,
        title,
        peak,
        "xMinYMin meet" if axis else "none",
        title,
        body,
    )
