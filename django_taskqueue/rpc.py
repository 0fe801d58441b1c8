"""The RPC objects of the `*_async` calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .exceptions import Error, InvalidDeadlineError


class UserRPC:
    """The object the `*_async` calls return; `get_result()` gives the value or raises.

    The work runs when the call is made, on the caller's database connection, so that an
    asynchronous add inside `transaction.atomic()` is part of the transaction as a plain add
    is. For concurrency in async code, use the `a`-prefixed coroutines instead.
    """

    def __init__(self, deadline: float | None = None, callback: Callable[[], Any] | None = None):
        if deadline is not None:
            check_deadline(deadline)
        self.deadline = deadline
        self.callback = callback
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None

    def _run(self, function: Callable[[], Any]) -> UserRPC:
        try:
            self._result = function()
        except Error as exc:
            self._exception = exc
        self._done = True
        if self.callback is not None:
            self.callback()
        return self

    def wait(self) -> None:
        """Return at once: the work is already done."""

    def check_success(self) -> None:
        if self._exception is not None:
            raise self._exception

    def get_result(self) -> Any:
        self.check_success()
        return self._result


def create_rpc(deadline: float | None = None, callback: Callable[[], Any] | None = None) -> UserRPC:
    """Create an RPC object for the `*_async` calls."""
    return UserRPC(deadline, callback)


def check_deadline(deadline: Any) -> None:
    """Raise TypeError for a deadline that is not a number, InvalidDeadlineError if not > 0."""
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError("deadline must be a number")
    if deadline <= 0:
        raise InvalidDeadlineError("deadline must be greater than 0")
