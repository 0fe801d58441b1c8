"""Django's Tasks framework: `django.tasks` on Django 6.0 and newer, the `django-tasks` backport before.

The rest of the package imports the framework's names from here and nowhere else. Nothing of the
framework is copied: on Django 5.2 install the backport (`pip install "django-taskqueue[tasks]"`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    from django.tasks import (  # Django 6.0+
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django.tasks import signals as framework_signals
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    SOURCE = "django.tasks"
except ImportError:  # Django 5.2: the backport
    # Type-checked as Django's own framework, whose API the backport mirrors: importing both
    # under one name would give every name two types.
    if TYPE_CHECKING:
        raise
    try:
        from django_tasks import DEFAULT_TASK_QUEUE_NAME, task_backends
    except ImportError as e:
        raise ImportError(
            "django_taskqueue.backends needs Django's Tasks framework: Django 6.0 or newer, or "
            'on Django 5.2 the django-tasks backport (pip install "django-taskqueue[tasks]").'
        ) from e
    from django_tasks import checks as _checks  # noqa: F401  (registers the backends' checks)
    from django_tasks import signals as framework_signals  # type: ignore[no-redef]
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

    SOURCE = "django_tasks"

__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "SOURCE",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "framework_signals",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
