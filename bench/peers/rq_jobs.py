"""RQ with Redis: the no-op job."""

from bench.jobs import mark


def noop() -> None:
    mark()
