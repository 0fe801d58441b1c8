"""The base of the worker's maintenance services: a name, an interval and a batch limit."""

from __future__ import annotations

import datetime


class Sweep:
    """One maintenance service: `run()` does at most `limit` rows of work per batch."""

    name = "sweep"

    def __init__(self, alias: str, interval_seconds: float, limit: int = 1000) -> None:
        self.alias = alias
        self.interval_seconds = interval_seconds
        self.limit = limit

    def run(self, now: datetime.datetime) -> int:
        """Do one round of work; return how many rows it changed."""
        raise NotImplementedError
