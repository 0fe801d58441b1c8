"""Template filters for queue figures: `{% load taskqueue %}{{ stats.enforced_rate|tq_rate }}`."""

from __future__ import annotations

from django import template

from .. import humanize

register = template.Library()


@register.filter
def tq_rate(per_second: float | None) -> str:
    """A rate in tasks per second, to two significant figures ("4.7/s", "0.17/h")."""
    return humanize.rate(per_second)


@register.filter
def tq_age(seconds: float | None) -> str:
    """An age in seconds, in words ("3 minutes 10 seconds")."""
    return humanize.age(seconds)
