"""Scheduled jobs: App Engine's cron.yaml, served by every worker, each slot run exactly once."""

from ..conf import taskqueue_settings


def cron_configured() -> bool:
    """Whether any cron job can exist: CRON_YAML is set or CRON is not empty.

    Without either there is nothing to serve, so a worker leaves out the cron service and,
    with it, the modules that parse and schedule jobs (half a megabyte of its memory).
    """
    return taskqueue_settings.CRON_YAML is not None or bool(taskqueue_settings.CRON)
