"""A worker process imports nothing it never uses: no DRF, no drf-spectacular, no httpx
unless a target is remote (each costs megabytes in every worker process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from django_taskqueue.models import TaskRecord, TaskState
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


def test_a_worker_without_the_rest_api_imports_no_drf_and_no_httpx(child_env, tmp_path):
    Queue("default").add([Task(method="GET", name=f"t{i}", url="/echo") for i in range(3)])
    out = tmp_path / "modules.json"
    env = {**child_env, "DJANGO_SETTINGS_MODULE": "tests.lean_settings"}
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
    modules = json.loads(out.read_text())
    loaded = [m for m in modules if m.split(".")[0] in NEVER]
    assert loaded == [], loaded
