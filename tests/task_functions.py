"""Tasks of Django's Tasks framework, declared the documented way, for tests/test_backend.py."""

from __future__ import annotations

import asyncio

try:
    from django.tasks import task  # Django 6.0+
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

#: Calls made in this process, in order (the in-process worker shares it).
CALLS: list[str] = []


@task
def add(a: int, b: int) -> int:
    return a + b


@task(priority=10, queue_name="fast")
def record(label: str) -> str:
    CALLS.append(label)
    return label


@task
def always_fails(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def second_time_lucky(context, label: str) -> dict:
    """Fail on the first attempt; return what the context says on the next."""
    if context.attempt == 1:
        raise RuntimeError(f"{label}: first attempt fails")
    seen = context.task_result
    return {
        "attempt": context.attempt,
        "id": seen.id,
        "enqueued_at": seen.enqueued_at.isoformat(),
        "started_at": seen.started_at.isoformat(),
        "errors": [e.exception_class_path for e in seen.errors],
        "status": str(seen.status),
    }


@task
async def async_multiply(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a * b


@task
def returns_a_set() -> set:
    return {1, 2}
