"""Forged, tampered and replayed task requests never reach a handler as task requests.

A signature covers every header a handler trusts; an edited header, an added X-AppEngine-*
header or a second delivery of a captured request is refused (403 from `task_view`, headers
stripped before any other view) while the attempt it names is still running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from django_taskqueue.dispatch.delivery import task_headers
from django_taskqueue.models import QueueState, TaskRecord, TaskState, UsedSignature
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT, claim_now
from ..handlers import RECORD_ENV

#: Every header the worker sends that a handler may trust, with a forged value for each.
TRUSTED = {
    "X-AppEngine-QueueName": "fast",
    "X-AppEngine-TaskName": "other",
    "X-AppEngine-TaskRetryCount": "7",
    "X-AppEngine-TaskExecutionCount": "7",
    "X-AppEngine-TaskETA": "0.000000",
    "X-AppEngine-TaskPreviousResponse": "200",
    "X-AppEngine-TaskRetryReason": "forged",
    "Content-Type": "application/json",
    "X-Custom": "forged",
}


@pytest.fixture
def delivery(frozen_clock):
    """The headers, method, path and body of a running attempt, as the worker would send them."""
    Queue("default").add(
        Task(
            b"payload",
            method="PUT",
            name="victim",
            url="/protected?a=1",
            headers={"X-Custom": "mine"},
        )
    )
    # A retry, so the request carries X-AppEngine-TaskPreviousResponse and -RetryReason too.
    TaskRecord.objects.filter(name="victim").update(
        retry_count=1, execution_count=1, last_response_code=503, last_retry_reason="HTTP 503"
    )
    QueueState.objects.create(name="default")
    QueueState.objects.create(name="fast")
    [claimed] = claim_now("default", frozen_clock).tasks
    headers = task_headers(claimed)
    assert set(TRUSTED) <= set(headers)
    return claimed, headers


def send(client, headers, *, path="/protected?a=1", body=b"payload", method="PUT"):
    sent = {k: v for k, v in headers.items() if k != "Content-Type"}
    return client.generic(
        method, path, body, content_type=headers.get("Content-Type", ""), headers=sent
    )


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(TRUSTED))
def test_each_signed_header_edited_is_refused(client, delivery, name):
    _, headers = delivery
    assert send(client, {**headers, name: TRUSTED[name]}).status_code == 403
    # The views that are not task_view see none of the task headers.
    seen = send(client, {**headers, name: TRUSTED[name]}, path="/headers-seen", method="GET")
    assert seen.json() == {}


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(TRUSTED))
def test_each_signed_header_removed_is_refused(client, delivery, name):
    _, headers = delivery
    headers = {k: v for k, v in headers.items() if k != name}
    if name == "Content-Type":
        headers["Content-Type"] = ""
    assert send(client, headers).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        {"method": "POST"},
        {"path": "/protected?a=2"},
        {"path": "/protected/other?a=1"},
        {"body": b"payload!"},
    ],
    ids=["method", "query", "path", "body"],
)
def test_method_path_and_body_are_signed(client, delivery, change):
    _, headers = delivery
    assert send(client, headers, **change).status_code == 403


@pytest.mark.django_db
def test_an_unsigned_appengine_header_is_removed(client, delivery):
    _, headers = delivery
    response = send(
        client, {**headers, "X-AppEngine-Cron": "true"}, path="/headers-seen", method="GET"
    )
    # The method and path are signed: a GET to another path is not this delivery.
    assert response.json() == {}
    claimed, _ = delivery
    get = Task(name="get", method="GET", url="/headers-seen")
    Queue("fast").add(get)
    [task] = claim_now("fast", _Now(claimed.leased_at)).tasks
    response = send(
        client,
        {**task_headers(task), "X-AppEngine-Cron": "true"},
        path="/headers-seen",
        method="GET",
        body=b"",
    )
    seen = response.json()
    assert seen["X-Appengine-Queuename"] == "fast"
    assert "X-Appengine-Cron" not in seen


class _Now:
    def __init__(self, at):
        self.at = at

    def now(self):
        return self.at


@pytest.mark.django_db
def test_a_delivery_is_accepted_once_while_its_attempt_runs(client, delivery):
    claimed, headers = delivery
    assert send(client, headers).status_code == 200
    assert TaskRecord.objects.get(id=claimed.id).state == TaskState.RUNNING
    assert send(client, headers).status_code == 403
    assert UsedSignature.objects.count() == 1


@pytest.mark.django_db
def test_used_signatures_are_pruned_once_too_old_to_verify(client, delivery, frozen_clock):
    from django_taskqueue import security

    _, headers = delivery
    assert send(client, headers).status_code == 200
    frozen_clock.advance(301)  # past SIGNATURE_MAX_AGE_SECONDS
    Queue("default").add(Task(b"x", name="later", url="/protected"))
    [task] = claim_now("default", frozen_clock).tasks
    security._next_prune_at = 0.0
    response = send(client, task_headers(task), path="/protected", body=b"x", method="POST")
    assert response.status_code == 200
    assert list(UsedSignature.objects.values_list("signed_at", flat=True)) == [frozen_clock.now()]


@pytest.mark.django_db(transaction=True)
def test_a_captured_http_delivery_cannot_be_replayed(
    live_server, child_env, tmp_path, settings, monkeypatch
):
    """A worker process delivers over real HTTP; the request, captured while its handler
    runs, is sent again as is and with an edited header: neither is a task request."""
    record = tmp_path / "record.jsonl"
    # The handler runs in this process, behind the live server.
    monkeypatch.setenv(RECORD_ENV, str(record))
    child_env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps(
        {"TARGETS": {"web": live_server.url}, "POLL_INTERVAL_SECONDS": 0.1}
    )
    settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {"web": live_server.url}}
    Queue("default").add(
        Task(
            b"body",
            method="PUT",
            name="captured",
            url="/sleep?seconds=4&first=1&mark=1",
            target="web",
        )
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "runtaskworker", "--burst", "--queue", "default"],
        cwd=REPO_ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        [genuine] = _lines(record)
        assert genuine["signed"] is True
        assert TaskRecord.objects.get(name="captured").state == TaskState.RUNNING
        headers = {
            k: v for k, v in genuine["headers"].items() if k.lower() not in ("content-length",)
        }
        url = live_server.url + genuine["path"] + "?" + genuine["query"]
        for replay in (headers, {**headers, "X-Appengine-Taskretrycount": "7"}):
            response = httpx.put(url, headers=replay, content=genuine["body"].encode("latin-1"))
            assert response.status_code == 200
        # Both replays ran as plain requests: no task headers, so no 4-second first attempt.
        replays = [e for e in _lines(record) if e["event"] == "started"][1:]
        assert [e["signed"] for e in replays] == [False, False]
        assert all("X-Appengine-Taskretrycount" not in e["headers"] for e in replays)
        assert TaskRecord.objects.get(name="captured").state == TaskState.RUNNING
        output = worker.communicate(timeout=60)[0]
        assert worker.returncode == 0, output
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert TaskRecord.objects.get(name="captured").state == TaskState.SUCCEEDED


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line]
