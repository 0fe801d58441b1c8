"""Waiting on sockets: the LISTEN connection's and the worker's `Wakeup`, in one call."""

from __future__ import annotations

import select
from collections.abc import Sequence


def wait_readable(fds: Sequence[int], timeout: float) -> list[int]:
    """Wait up to `timeout` seconds for one of `fds` to be readable; return the readable ones.

    poll() where the platform has it (no limit on the descriptors' numbers), else select().
    A descriptor whose peer hung up or failed counts as readable: its reader finds out.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        return [fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)]
    readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
    return list(readable)
