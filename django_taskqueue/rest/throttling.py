"""Throttling of lease requests, per queue (App Engine allowed 10 per second per queue).

The rate is `TASKQUEUE["REST_LEASE_RATE"]` ("10/s" by default, None for no limit). The count is
kept in Django's default cache: with a cache shared by the web processes (Redis, Memcached,
the database) the limit holds for the whole site, with the default local-memory cache it holds
per process. An excess request is answered 429 with `Retry-After`.
"""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from .. import clock
from ..conf import taskqueue_settings


class LeaseRateThrottle(SimpleRateThrottle):
    """Allow `REST_LEASE_RATE` lease requests per queue, whoever makes them."""

    scope = "taskqueue_lease"

    def get_rate(self) -> str | None:
        # DRF makes a throttle per request and asks for its rate then, so
        # override_settings(TASKQUEUE=...) applies at once.
        return taskqueue_settings.REST_LEASE_RATE

    def timer(self) -> float:
        # The package's clock, so tests that freeze time freeze the throttle window too.
        return clock.now().timestamp()

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": view.kwargs["queue"]}
