"""Configuration that cannot work never passes `check`, and never ends in a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.checks import run_checks

from ..conftest import REPO_ROOT


def ids(settings, **taskqueue):
    settings.TASKQUEUE = {**settings.TASKQUEUE, **taskqueue}
    return sorted(
        {m.id for m in run_checks(databases=[]) if m.id and m.id.startswith("django_taskqueue.")}
        - {"django_taskqueue.E021"}  # the Tasks backend's queues vanish with a broken QUEUES
    )


@pytest.mark.parametrize(
    "taskqueue, expected",
    [
        ({"LEASE_MARGIN_SECONDS": 0}, "E050"),
        ({"LEASE_MARGIN_SECONDS": 0.5}, "E050"),
        ({"POLL_INTERVAL_SECONDS": 0.001}, "E051"),
        ({"RESCUE_INTERVAL_SECONDS": 0.01}, "E051"),
        ({"PRUNE_INTERVAL_SECONDS": 1e-9}, "E051"),
        ({"TOMBSTONE_SECONDS": 1e15}, "E052"),
        ({"DEFAULT_DEADLINE_SECONDS": 86400 * 365 * 11}, "E052"),
        ({"LEASE_MARGIN_SECONDS": 1e12}, "E052"),
        ({"DEFAULT_DEADLINE_SECONDS": 0.5}, "E053"),
        ({"SIGNATURE_MAX_AGE_SECONDS": 0.001}, "E053"),
        ({"QUEUES": {"p": {"mode": "pull", "acl": [{"user_email": "anyone"}]}}}, "E005"),
        ({"QUEUES": {"p": {"acl": [{"writer_email": "a@b@c"}]}}}, "E005"),
        ({"QUEUES": {"p": {"bucket_size": "9" * 40}}}, "E005"),
        ({"QUEUES": {"p": {"max_concurrent_requests": 2**31}}}, "E005"),
        ({"QUEUES": {"p": {"rate": "9" * 400 + "/s"}}}, "E005"),
        ({"QUEUES": {"p": {"retry_parameters": {"task_retry_limit": "9" * 400}}}}, "E005"),
        ({"QUEUES": {"p": {"retry_parameters": {"task_age_limit": "9" * 400 + "d"}}}}, "E005"),
        ({"QUEUES": {"p": {"retry_parameters": {"max_backoff_seconds": 1e300}}}}, "E005"),
        ({"QUEUES": {"p": {"retry_parameters": {"max_doublings": 10**400}}}}, "E005"),
        ({"QUEUES": {1: {}}}, "E005"),
        ({"TARGETS": {"w": "http://[::1"}}, "E007"),
        ({"TARGETS": {"w": "http://host:99999"}}, "E007"),
    ],
)
def test_unworkable_settings_fail_check(settings, taskqueue, expected):
    assert ids(settings, **taskqueue) == [f"django_taskqueue.{expected}"]


def test_workable_bounds_pass(settings):
    assert (
        ids(
            settings,
            LEASE_MARGIN_SECONDS=1,
            POLL_INTERVAL_SECONDS=0.01,
            RESCUE_INTERVAL_SECONDS=0.1,
            PRUNE_INTERVAL_SECONDS=0.1,
            DEFAULT_DEADLINE_SECONDS=1,
            SIGNATURE_MAX_AGE_SECONDS=1,
            TOMBSTONE_SECONDS=10 * 365 * 86400,
            QUEUES={"p": {"acl": [{"user_email": "a.b+c@example.co.uk"}]}},
        )
        == []
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"queue:\n- name: caf\xe9\n", "not UTF-8 text"),
        (b"queue: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"queue:\n- name: a\x00b\n", "not valid YAML"),
    ],
    ids=["latin-1", "deep", "nul"],
)
def test_a_broken_queue_yaml_is_one_error_naming_the_file(settings, tmp_path, content, message):
    path = tmp_path / "queue.yaml"
    path.write_bytes(content)
    settings.TASKQUEUE = {**settings.TASKQUEUE, "QUEUE_YAML": path}
    [error] = [m for m in run_checks(databases=[]) if m.id == "django_taskqueue.E004"]
    assert str(path) in error.msg and message in error.msg


@pytest.mark.parametrize(
    "command, skip_checks",
    [("check", False), ("runtaskworker", False), ("runtaskworker", True)],
    ids=["check", "runtaskworker", "runtaskworker-skip-checks"],
)
def test_no_traceback_from_the_commands(tmp_path, command, skip_checks):
    path = tmp_path / "queue.yaml"
    path.write_bytes(b"queue:\n- name: caf\xe9\n")
    argv = [sys.executable, "-m", "django", command]
    if command == "runtaskworker":
        argv += ["--burst"]
    if skip_checks:
        argv += ["--skip-checks"]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKQUEUE_TEST_OVERRIDES": f'{{"QUEUE_YAML": "{path}"}}',
    }
    result = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert str(path) in result.stderr and "not UTF-8 text" in result.stderr


def test_a_zero_lease_margin_stops_the_worker_at_start(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TASKQUEUE_TEST_OVERRIDES": '{"LEASE_MARGIN_SECONDS": 0}',
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "runtaskworker", "--burst"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "django_taskqueue.E050" in result.stderr
    assert "Traceback" not in result.stderr
