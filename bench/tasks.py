"""The no-op Django Tasks `@task`: TaskQueueBackend runs it as `default`, django-tasks-db as `db`."""

from django_tasks import task

from bench.jobs import mark


@task(queue_name="bench-push")
def noop_task() -> None:
    mark()
