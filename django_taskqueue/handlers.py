"""The direct handlers of the package's own task urls, registered when the app is ready.

`deferred` tasks (`/_ah/queue/deferred`, App Engine's url) and tasks of Django's Tasks framework
(`/_ah/queue/django-tasks`) run in the worker as Python calls. The modules that run them are
imported at the first call, so a project without Django's Tasks framework loads neither.
"""

from __future__ import annotations

from typing import Any

from .dispatch import direct
from .dispatch.direct import DEFERRED_URL, DJANGO_TASKS_URL

__all__ = ["DEFERRED_URL", "DJANGO_TASKS_URL", "run_deferred", "run_django_task"]


def run_deferred(call: direct.DirectCall) -> Any:
    """Run a `deferred.defer` call."""
    from . import deferred

    return deferred.run(call.payload or b"")


def run_django_task(call: direct.DirectCall) -> Any:
    """Run a task of Django's Tasks framework enqueued on `backends.TaskQueueBackend`."""
    from . import backends

    return backends.run(call)


direct.register(DEFERRED_URL, run_deferred)
direct.register(DJANGO_TASKS_URL, run_django_task)
