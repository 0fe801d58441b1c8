"""`runtaskworker --list-cron`: the cron jobs as a plain-text table."""

from __future__ import annotations

import datetime
from typing import Any

from .. import clock
from .status import job_statuses


def _when(moment: datetime.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def write_cron_table(out: Any) -> None:
    """Write one block per job: name, url, schedule in words, last and next run, status."""
    statuses = job_statuses(clock.now())
    if not statuses:
        out.write("No cron jobs (TASKQUEUE['CRON_YAML'] and TASKQUEUE['CRON'] are empty).")
        return
    for status in statuses:
        job = status.job
        out.write(f"{job.name}")
        out.write(f"  url:       {job.url}" + (f" (target {job.target})" if job.target else ""))
        out.write(f"  schedule:  {job.schedule_text}")
        out.write(f"  in words:  {job.describe()}")
        out.write(f"  last run:  {_when(status.last_run_at)}  {status.last_status}")
        out.write(f"  next run:  {_when(status.next_run_at)}")
