"""A worker process imports nothing it never uses: no DRF, no drf-spectacular, no httpx
unless a target is remote (each costs megabytes in every worker process); no cron modules when
no cron job is configured; and its system checks load neither template tag libraries nor the
migration commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from django_taskqueue.models import CronJobState, TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.django_db(transaction=True)

CHILD = """
import json, sys
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "runtaskworker", "--burst", "--queue", "default"])
with open(sys.argv[1], "w") as f:
    json.dump(sorted(sys.modules), f)
"""

NEVER = ("rest_framework", "drf_spectacular", "httpx")

#: Loaded only by checks a worker leaves out: Django's template checks (tag libraries) and its
#: command check (the migrate and makemigrations commands, with the migration machinery).
CHECKS_ONLY = (
    "django.templatetags.cache",
    "django.templatetags.tz",
    "django.core.management.commands.migrate",
    "django.core.management.commands.makemigrations",
    "django.db.migrations.autodetector",
    "django.db.migrations.loader",
    "django.db.migrations.writer",
)


def _worker_modules(child_env, tmp_path, **overrides: str) -> list[str]:
    """Drain three tasks with a burst worker of tests.lean_settings; return sys.modules."""
    Queue("default").add([Task(method="GET", name=f"t{i}", url="/echo") for i in range(3)])
    out = tmp_path / "modules.json"
    env = {**child_env, "DJANGO_SETTINGS_MODULE": "tests.lean_settings", **overrides}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(out)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == 3, done.stderr
    return json.loads(out.read_text())


def test_a_worker_without_the_rest_api_imports_no_drf_and_no_httpx(child_env, tmp_path):
    modules = _worker_modules(child_env, tmp_path)
    loaded = [m for m in modules if m.split(".")[0] in NEVER]
    assert loaded == [], loaded


def test_a_worker_without_cron_jobs_imports_no_cron_module(child_env, tmp_path):
    modules = _worker_modules(child_env, tmp_path)
    loaded = [m for m in modules if m.startswith("django_taskqueue.cron.")]
    assert loaded == [], loaded


def test_a_worker_with_cron_jobs_serves_them(child_env, tmp_path):
    cron = {"CRON": {"nightly": {"url": "/echo", "schedule": "every 24 hours"}}}
    modules = _worker_modules(child_env, tmp_path, TASKQUEUE_TEST_OVERRIDES=json.dumps(cron))
    assert "django_taskqueue.cron.service" in modules
    assert CronJobState.objects.count() == 1  # the service read the job and recorded its state


def test_the_worker_checks_leave_out_template_libraries_and_migration_commands(child_env, tmp_path):
    modules = _worker_modules(child_env, tmp_path)
    loaded = [m for m in modules if m in CHECKS_ONLY]
    assert loaded == [], loaded
