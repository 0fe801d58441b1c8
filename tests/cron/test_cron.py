"""Cron jobs on every database: configuration, checks, the service's slots, delivery, admin, command."""

import datetime
import io
import json

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from django_taskqueue import checks, security
from django_taskqueue.cron.config import (
    CronConfigurationError,
    all_cron_jobs,
    parse_cron_definitions,
    parse_cron_yaml,
)
from django_taskqueue.cron.service import CronService, enqueue_run, slot_task_name
from django_taskqueue.models import CronJobState, TaskRecord, TaskState
from django_taskqueue.testing import run_tasks

UTC = datetime.UTC

CRON_YAML = """
cron:
- description: "daily summary job"
  url: /tasks/summary
  schedule: every 24 hours
- description: "monday morning mailout"
  url: /mail/weekly
  schedule: every monday 09:00
  timezone: Australia/NSW
- description: "new daily summary job"
  url: /tasks/summary
  schedule: every 24 hours
  target: beta
  retry_parameters:
    job_retry_limit: 5
    job_age_limit: 2d
    min_backoff_seconds: 2.5
    max_backoff_seconds: 30
    max_doublings: 3
"""


# Configuration ---------------------------------------------------------------------------------


def test_cron_yaml_is_read_as_is():
    jobs = parse_cron_yaml(CRON_YAML)
    assert [j.description for j in jobs] == [
        "daily summary job",
        "monday morning mailout",
        "new daily summary job",
    ]
    assert jobs[1].timezone == "Australia/NSW"
    assert jobs[2].target == "beta"
    params = jobs[2].retry_parameters
    assert params is not None
    assert (params.task_retry_limit, params.task_age_limit) == (5, 2 * 86400)
    assert (params.min_backoff_seconds, params.max_backoff_seconds, params.max_doublings) == (
        2.5,
        30.0,
        3,
    )
    assert jobs[0].retry_parameters is None
    assert len({j.key for j in jobs}) == 3


def test_cron_setting_is_keyed_by_job_name():
    (job,) = parse_cron_definitions({"cleanup": {"url": "/c", "schedule": "every 5 minutes"}})
    assert job.description == "cleanup" and job.url == "/c"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"url": "/x"}, "schedule is required"),
        ({"url": "x", "schedule": "every 5 minutes"}, "url must be a path"),
        ({"url": "/x", "schedule": "every 5 minutes", "timezone": "Mars/Base"}, "timezone"),
        ({"url": "/x", "schedule": "every 5 minutes", "colour": "red"}, "unknown directive"),
        (
            {
                "url": "/x",
                "schedule": "every 5 minutes",
                "retry_parameters": {"task_retry_limit": 1},
            },
            "unknown retry_parameters",
        ),
        (
            {
                "url": "/x",
                "schedule": "every 5 minutes",
                "retry_parameters": {"job_retry_limit": -1},
            },
            "job_retry_limit",
        ),
        ({"url": "/x", "schedule": "31 of feb 10:00"}, "never runs"),
    ],
)
def test_malformed_jobs(entry, words):
    with pytest.raises(CronConfigurationError) as info:
        parse_cron_definitions({"job": entry})
    assert words in str(info.value)
    assert "CRON['job']" in str(info.value)


def _check_ids(settings, **taskqueue):
    settings.TASKQUEUE = {**settings.TASKQUEUE, **taskqueue}
    return [(m.id, m.msg) for m in checks.check_cron()]


def test_check_reports_bad_schedule_with_job_and_position(settings, tmp_path):
    path = tmp_path / "cron.yaml"
    path.write_text(
        "cron:\n- description: ok\n  url: /a\n  schedule: every 5 minutes\n"
        "- description: nightly\n  url: /b\n  schedule: every dya 02:00\n"
    )
    messages = _check_ids(settings, CRON_YAML=path)
    assert len(messages) == 1
    message_id, text = messages[0]
    assert message_id == "django_taskqueue.E061"
    assert "job 2" in text and "'nightly'" in text and "at character 7" in text


def test_check_ids(settings, tmp_path):
    assert (
        _check_ids(settings, CRON_YAML=tmp_path / "missing.yaml")[0][0] == "django_taskqueue.E060"
    )
    assert _check_ids(settings, CRON_YAML=42)[0][0] == "django_taskqueue.E060"
    assert _check_ids(settings, CRON_YAML=None, CRON={"j": {"url": "/x"}})[0][0] == (
        "django_taskqueue.E062"
    )
    job = {"j": {"url": "/x", "schedule": "every 5 minutes"}}
    assert _check_ids(settings, CRON=job) == []
    assert _check_ids(settings, CRON=job, CRON_QUEUE="pull-queue")[0][0] == (
        "django_taskqueue.E063"
    )
    assert _check_ids(settings, CRON=job, CRON_QUEUE="nope")[0][0] == "django_taskqueue.E063"
    targeted = {"j": {"url": "/x", "schedule": "every 5 minutes", "target": "beta"}}
    assert _check_ids(settings, CRON=targeted, CRON_QUEUE="default")[0][0] == (
        "django_taskqueue.W064"
    )


# The service -----------------------------------------------------------------------------------


@pytest.fixture
def cron_jobs(settings):
    settings.TASKQUEUE = {
        **settings.TASKQUEUE,
        "CRON": {
            "tick": {"url": "/echo", "schedule": "every 5 minutes"},
            "nightly": {"url": "/echo?job=nightly", "schedule": "every day 02:00"},
            "skipper": {"url": "/echo", "schedule": "every 5 minutes", "skip_missed": True},
        },
    }
    return {job.description: job for job in all_cron_jobs()}


def cron_tasks(job):
    return list(
        TaskRecord.objects.filter(name__startswith=f"cron-{job.key}-").order_by("eta", "id")
    )


@pytest.mark.django_db(transaction=True)
def test_each_slot_runs_once_however_many_workers(cron_jobs, frozen_clock):
    frozen_clock.set(datetime.datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    workers = [CronService("default") for _ in range(3)]
    for worker in workers:
        assert worker.run(frozen_clock.now()) == 0  # a new job waits for its next slot
    tick = cron_jobs["tick"]
    assert cron_tasks(tick) == []
    # Nothing is due before 12:05: no database work at all.
    frozen_clock.set(datetime.datetime(2026, 3, 1, 12, 4, 59, tzinfo=UTC))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        for worker in workers:
            worker.run(frozen_clock.now())
    assert len(queries) == 0
    for minute in range(5, 31):
        frozen_clock.set(datetime.datetime(2026, 3, 1, 12, minute, 0, tzinfo=UTC))
        for worker in workers:
            worker.run(frozen_clock.now())
    slots = [datetime.datetime(2026, 3, 1, 12, m, tzinfo=UTC) for m in range(5, 31, 5)]
    assert [t.name for t in cron_tasks(tick)] == [slot_task_name(tick, s) for s in slots]
    state = CronJobState.objects.get(key=tick.key)
    assert state.last_slot_at == slots[-1]


@pytest.mark.django_db(transaction=True)
def test_slot_survives_restarts(cron_jobs, frozen_clock):
    tick = cron_jobs["tick"]
    frozen_clock.set(datetime.datetime(2026, 3, 1, 12, 4, tzinfo=UTC))
    CronService("default").run(frozen_clock.now())
    frozen_clock.set(datetime.datetime(2026, 3, 1, 12, 5, tzinfo=UTC))
    first = CronService("default")
    first.run(frozen_clock.now())  # start: on time, runs the 12:05 slot
    assert len(cron_tasks(tick)) == 1
    # A worker restarted in the same slot, even with its state lost, adds nothing.
    CronJobState.objects.filter(key=tick.key).update(last_slot_at=None)
    CronService("default").run(frozen_clock.now())
    assert len(cron_tasks(tick)) == 1


@pytest.mark.django_db(transaction=True)
def test_missed_slots_run_once_in_all_or_are_skipped(cron_jobs, frozen_clock):
    tick, skipper, nightly = cron_jobs["tick"], cron_jobs["skipper"], cron_jobs["nightly"]
    frozen_clock.set(datetime.datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    CronService("default").run(frozen_clock.now())
    # No worker runs for three days: hundreds of 5-minute slots and three nightly ones pass.
    frozen_clock.set(datetime.datetime(2026, 3, 4, 12, 2, tzinfo=UTC))
    assert CronService("default").run(frozen_clock.now()) == 2
    (caught_up,) = cron_tasks(tick)
    assert caught_up.name == slot_task_name(tick, datetime.datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    (night,) = cron_tasks(nightly)
    assert night.name == slot_task_name(nightly, datetime.datetime(2026, 3, 4, 2, 0, tzinfo=UTC))
    assert cron_tasks(skipper) == []
    assert CronJobState.objects.get(key=skipper.key).last_slot_at == datetime.datetime(
        2026, 3, 4, 12, 0, tzinfo=UTC
    )
    # A second worker starting now finds nothing missed.
    assert CronService("default").run(frozen_clock.now()) == 0


@pytest.mark.django_db(transaction=True)
def test_delivery_is_a_signed_get_with_the_cron_header(
    cron_jobs, frozen_clock, tmp_path, monkeypatch
):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("TASKQUEUE_TEST_RECORD", str(record))
    job = cron_jobs["nightly"]
    enqueue_run(job, now=frozen_clock.now())
    (task,) = cron_tasks(job)
    assert task.method == "GET" and task.url == "/echo?job=nightly"
    assert task.retry_options == {"task_retry_limit": 0}
    assert run_tasks("default") == 1
    (line,) = [json.loads(x) for x in record.read_text().splitlines()]
    assert line["method"] == "GET"
    assert line["headers"]["X-Appengine-Cron"] == "true"
    assert line["signed"] is True
    task.refresh_from_db()
    assert task.state == TaskState.SUCCEEDED


def test_retry_parameters_become_the_task_retry_options():
    from django_taskqueue.cron.service import retry_options

    job = parse_cron_yaml(CRON_YAML)[2]
    options = retry_options(job)
    assert options.task_retry_limit == 5
    assert options.task_age_limit == 2 * 86400
    assert options.min_backoff_seconds == 2.5
    assert options.max_backoff_seconds == 30.0
    assert options.max_doublings == 3


def test_a_task_cannot_claim_to_be_cron():
    from django_taskqueue.taskqueue import Task

    task = Task(url="/x", headers={"X-AppEngine-Cron": "true"})
    assert "X-AppEngine-Cron" not in task.headers


def _signed_request(cron: str | None, signed_cron: str | None):
    """A request to /headers-seen sent with `cron` and signed as sent with `signed_cron`."""
    signed = {"X-AppEngine-QueueName": "default", "X-AppEngine-TaskName": "t"}
    if signed_cron is not None:
        signed["X-AppEngine-Cron"] = signed_cron
    signature = security.sign(
        queue_name="default",
        task_name="t",
        task_id=1,
        attempt=1,
        method="GET",
        path="/headers-seen",
        body=b"",
        headers=signed,
    )
    headers = {
        "HTTP_X_APPENGINE_QUEUENAME": "default",
        "HTTP_X_APPENGINE_TASKNAME": "t",
        "HTTP_X_TASKQUEUE_SIGNATURE": signature,
    }
    if cron is not None:
        headers["HTTP_X_APPENGINE_CRON"] = cron
    return RequestFactory().get("/headers-seen", **headers)


@pytest.mark.django_db
def test_the_signature_covers_the_cron_header(monkeypatch):
    # The attempt is "running" for this test: only the HMAC is under test here.
    monkeypatch.setattr(security, "_attempt_is_running", lambda *args: True)
    assert security.verify(_signed_request("true", "true")) is not None
    assert security.verify(_signed_request(None, None)) is not None
    # Changed, or removed: the signature no longer holds.
    assert security.verify(_signed_request("false", "true")) is None
    assert security.verify(_signed_request(None, "true")) is None
    # Added to a signed non-cron request: the signature holds for what it covers, and
    # verifying strips the header it does not cover, so it never reaches the view.
    request = _signed_request("true", None)
    assert security.verify(request) is not None
    assert "HTTP_X_APPENGINE_CRON" not in request.META
    assert request.META["HTTP_X_APPENGINE_QUEUENAME"] == "default"


@pytest.mark.django_db
def test_unsigned_cron_header_is_stripped(client):
    response = client.get("/headers-seen", HTTP_X_APPENGINE_CRON="true")
    assert response.json() == {}


# Admin and command -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_admin_lists_jobs_and_runs_one_now(cron_jobs, admin_client, frozen_clock):
    url = reverse("admin:django_taskqueue_cronjobstate_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "nightly" in content and "at 02:00 every day (UTC)" in content
    assert "never run" in content
    job = cron_jobs["nightly"]
    response = admin_client.post(
        url, {"action": "run_now", "_selected_action": [job.key]}, follow=True
    )
    assert response.status_code == 200
    (task,) = cron_tasks(job)
    assert task.name.startswith(f"cron-{job.key}-now-")
    run_tasks("default")
    content = admin_client.get(url).content.decode()
    assert "succeeded (200)" in content


@pytest.mark.django_db(transaction=True)
def test_list_cron_prints_the_jobs(cron_jobs, frozen_clock):
    out = io.StringIO()
    call_command("runtaskworker", "--list-cron", stdout=out)
    text = out.getvalue()
    assert "nightly" in text and "every day 02:00" in text and "at 02:00 every day (UTC)" in text
    assert "next run:  2025-01-16 02:00:00 UTC" in text
    assert "never run" in text


@pytest.mark.django_db(transaction=True)
def test_burst_worker_serves_cron_unless_told_not_to(
    cron_jobs, frozen_clock, tmp_path, monkeypatch
):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("TASKQUEUE_TEST_RECORD", str(record))
    tick = cron_jobs["tick"]
    frozen_clock.set(datetime.datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    call_command("runtaskworker", "--burst", verbosity=0)  # first start: state only
    frozen_clock.set(datetime.datetime(2026, 3, 1, 12, 7, tzinfo=UTC))
    call_command("runtaskworker", "--burst", "--no-cron", verbosity=0)
    assert cron_tasks(tick) == []
    call_command("runtaskworker", "--burst", verbosity=0)
    (task,) = cron_tasks(tick)
    assert task.state == TaskState.SUCCEEDED
    assert len(record.read_text().splitlines()) == 1


@pytest.mark.django_db
def test_a_target_outside_targets_is_delivered_in_process(settings, frozen_clock):
    settings.TASKQUEUE = {
        **settings.TASKQUEUE,
        "TARGETS": {"beta": "http://beta.example.com"},
        "CRON": {
            "a": {"url": "/echo", "schedule": "every 5 minutes", "target": "beta"},
            "b": {"url": "/echo", "schedule": "every 5 minutes", "target": "gamma"},
        },
    }
    beta, gamma = all_cron_jobs()
    enqueue_run(beta, now=frozen_clock.now())
    enqueue_run(gamma, now=frozen_clock.now())
    assert [t.target for t in cron_tasks(beta)] == ["beta"]
    assert [t.target for t in cron_tasks(gamma)] == [None]


EXAMPLE_SCRIPT = """
import django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("migrate", verbosity=0)
from django_taskqueue import clock
from django_taskqueue.cron.config import all_cron_jobs
from django_taskqueue.cron.service import enqueue_run
from django_taskqueue.models import TaskRecord
from django_taskqueue.testing import run_tasks
(job,) = all_cron_jobs()
name = enqueue_run(job, now=clock.now())
run_tasks("default")
task = TaskRecord.objects.get(name=name)
print(task.state, task.last_response_code)
from django_taskqueue.dispatch.delivery import delivery_host
response = Client().get(job.url, HTTP_X_APPENGINE_CRON="true", HTTP_HOST=delivery_host())
print(response.status_code)
"""


def test_example_project_job_runs_for_cron_only(tmp_path):
    import os
    import subprocess
    import sys

    from ..conftest import REPO_ROOT

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'example.sqlite3'}",
    }
    env.pop("TEST_DATABASE_NAME", None)
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLE_SCRIPT],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Delivered by the worker: 200. The same header from a plain client: stripped, 403.
    assert result.stdout.split() == ["succeeded", "200", "403"]


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_is_retried_only_with_retry_parameters(settings, frozen_clock):
    settings.TASKQUEUE = {
        **settings.TASKQUEUE,
        "CRON": {
            "once": {"url": "/echo?status=500", "schedule": "every 5 minutes"},
            "again": {
                "url": "/echo?status=500",
                "schedule": "every 5 minutes",
                "retry_parameters": {"job_retry_limit": 2, "min_backoff_seconds": 10},
            },
        },
    }
    once, again = all_cron_jobs()
    enqueue_run(once, now=frozen_clock.now())
    enqueue_run(again, now=frozen_clock.now())
    run_tasks("default")
    (failed,) = cron_tasks(once)
    assert (failed.state, failed.last_response_code) == (TaskState.FAILED, 500)
    (retrying,) = cron_tasks(again)
    assert (retrying.state, retrying.retry_count) == (TaskState.QUEUED, 1)
    assert retrying.eta == frozen_clock.now() + datetime.timedelta(seconds=10)
