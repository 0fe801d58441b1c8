"""What the admin and `runtaskworker --list-cron` show of each cron job: schedule, runs, status."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ..conf import taskqueue_settings
from ..models import CronJobState, TaskRecord, TaskState
from .config import CronJob, all_cron_jobs


@dataclass(frozen=True)
class JobStatus:
    """One configured job with its last and next run."""

    job: CronJob
    last_run_at: datetime.datetime | None
    next_run_at: datetime.datetime | None
    #: The state of the job's latest task: "succeeded (200)", "retrying (HTTP 500)", "-", ...
    last_status: str
    last_task_name: str


def describe_task(record: TaskRecord | None) -> str:
    """Return a task's state in a few words, for a job's last run."""
    if record is None:
        return "pruned"
    code = record.last_response_code
    if record.state == TaskState.SUCCEEDED:
        return f"succeeded ({code})" if code else "succeeded"
    if record.state == TaskState.FAILED:
        return f"failed ({record.last_retry_reason or code or 'error'})"
    if record.state == TaskState.QUEUED and record.retry_count:
        return f"retrying ({record.last_retry_reason or code})"
    return str(TaskState(record.state).label).lower()


def job_statuses(now: datetime.datetime, alias: str | None = None) -> list[JobStatus]:
    """Return every configured job's status, in configuration order (one query per job run)."""
    alias = alias or taskqueue_settings.DATABASE
    jobs = all_cron_jobs()
    states = {
        s.key: s for s in CronJobState.objects.using(alias).filter(key__in=[j.key for j in jobs])
    }
    wanted = {(s.last_queue_name, s.last_task_name) for s in states.values() if s.last_task_name}
    records: dict[tuple[str, str], TaskRecord] = {}
    for queue_name, name in wanted:
        record = TaskRecord.objects.using(alias).filter(queue_name=queue_name, name=name).first()
        if record is not None:
            records[(queue_name, name)] = record
    result = []
    for job in jobs:
        state = states.get(job.key)
        if state is None or not state.last_task_name:
            status, last_run_at, task_name = "never run", None, ""
        else:
            key = (state.last_queue_name, state.last_task_name)
            status = describe_task(records.get(key))
            last_run_at, task_name = state.last_run_at, state.last_task_name
        result.append(
            JobStatus(
                job=job,
                last_run_at=last_run_at,
                next_run_at=job.next_run_after(now),
                last_status=status,
                last_task_name=task_name,
            )
        )
    return result
