"""Module-level callables that the deferred tests defer (a worker must be able to import them)."""

from __future__ import annotations

import asyncio

#: Calls made in this process, in order: the in-process worker (`run_tasks`) shares it.
CALLS: list[str] = []


def fails_with_type_error(name: str) -> str:
    return "hello " + name + 1  # type: ignore[operator]


def add(a: int, b: int) -> int:
    return a + b


def record(label: str) -> str:
    CALLS.append(label)
    return label


def shout(text: str, *, times: int = 1) -> str:
    return (text.upper() + "!") * times


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def big_len(data: str) -> int:
    return len(data)


class Counter:
    """An instance whose bound method is deferred (travels pickled, signed)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def plus(self, n: int) -> int:
        return self.start + n

    @classmethod
    def make(cls, start: int) -> int:
        return cls(start).start

    @staticmethod
    def double(n: int) -> int:
        return 2 * n


class Multiplier:
    """A callable instance."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, n: int) -> int:
        return self.factor * n


class Point:
    """A class called as a task: its instance is not JSON, so the result is None."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


#: Set by `explode` when it runs: the tampering tests check it stays False.
EXPLODED = {"value": False}


class Explode:
    """Unpickling this object runs code: what a forged pickle would do."""

    def __reduce__(self):
        return (_explode, ())


def _explode() -> None:
    EXPLODED["value"] = True


def permanent_failure() -> None:
    from django_taskqueue.deferred import PermanentTaskFailure

    CALLS.append("permanent")
    raise PermanentTaskFailure("give up")


def singular_then_ok(label: str) -> str:
    """Fail once with SingularTaskFailure, then succeed."""
    from django_taskqueue.deferred import SingularTaskFailure

    CALLS.append(label)
    if CALLS.count(label) == 1:
        raise SingularTaskFailure("not now")
    return "ok"


def own_status(task_name: str) -> list:
    """Return this task's status and attempts as seen from inside its own run."""
    from django_taskqueue.deferred import get_result

    result = get_result(task_name)
    return [result.status, result.attempts]


def big_permanent_failure(data: str) -> None:
    from django_taskqueue.deferred import PermanentTaskFailure

    CALLS.append(("big_permanent_failure", len(data)))
    raise PermanentTaskFailure("give up")
