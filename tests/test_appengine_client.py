"""App Engine's client behaviour, point by point, as its own tests and source have it."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_taskqueue import deferred, taskqueue
from django_taskqueue.dispatch import direct
from django_taskqueue.dispatch.claim import ClaimedTask
from django_taskqueue.dispatch.delivery import Deliverer
from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import DEFAULT_APP_VERSION, Queue, QueueStatistics, Task
from django_taskqueue.testing import TaskQueueStub, get_filtered_tasks, run_tasks
from tests import deferred_targets as targets
from tests.handlers import RECORD_ENV

from .conftest import FROZEN_AT

pytestmark = pytest.mark.django_db

HOSTNAME = "my-app.example.com"
NAMESPACE = {"X-AppEngine-Current-Namespace": ""}
TESTS_DIR = Path(__file__).parent


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """The requests the test handlers saw, read after the tasks ran."""
    path = tmp_path / "record.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(path))

    def read() -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    return read


def with_hostname(**extra: Any):
    return override_settings(
        TASKQUEUE={
            "QUEUE_YAML": TESTS_DIR / "fixtures" / "queue.yaml",
            "DEFAULT_VERSION_HOSTNAME": HOSTNAME,
            **extra,
        }
    )


# -- 1. target= ------------------------------------------------------------------------------


def test_a_target_outside_targets_is_delivered_in_process(recorded, caplog):
    caplog.set_level(logging.WARNING, logger="django_taskqueue")
    task = taskqueue.add(url="/echo", target="backend-v2")
    assert task.target == "backend-v2"
    assert run_tasks() == 1
    [request] = recorded()
    assert request["path"] == "/echo" and request["signed"]
    assert TaskRecord.objects.get(name=task.name).state == TaskState.SUCCEEDED


def test_the_default_target_is_the_default_app_version():
    assert Task().target is DEFAULT_APP_VERSION
    assert Task(target=DEFAULT_APP_VERSION).target is DEFAULT_APP_VERSION
    assert repr(DEFAULT_APP_VERSION) == "DEFAULT_APP_VERSION"


def test_without_a_hostname_no_host_is_implied():
    assert Task(target="v2").headers == NAMESPACE
    assert Task(headers={"Host": "v2.elsewhere"}).target is DEFAULT_APP_VERSION


def test_host_implied_by_a_target():
    with with_hostname():
        assert Task(target="v2").headers["Host"] == f"v2.{HOSTNAME}"
        assert Task(target=DEFAULT_APP_VERSION).headers["Host"] == HOSTNAME
        task = Task()
        assert task.headers == {"Host": HOSTNAME, **NAMESPACE}
        assert task.target is DEFAULT_APP_VERSION


def test_target_implied_by_a_host():
    with with_hostname():
        assert Task(headers={"Host": f"v2.{HOSTNAME}"}).target == "v2"
        assert Task(headers={"host": HOSTNAME}).target is DEFAULT_APP_VERSION
        assert Task(headers={"Host": "other.example.org"}).target is DEFAULT_APP_VERSION


def test_a_target_and_a_host_header_together_are_refused():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(target="v2", headers={"host": "ignored"})


# -- 2. headers ------------------------------------------------------------------------------


def test_headers_are_caseless():
    task = Task("text", headers={"X-Custom": "a"})
    assert task.headers["content-type"] == "text/plain; charset=utf-8"
    assert task.headers["CONTENT-TYPE"] == "text/plain; charset=utf-8"
    assert "x-custom" in task.headers
    assert task.headers == {
        "X-Custom": "a",
        "content-type": "text/plain; charset=utf-8",
        **NAMESPACE,
    }
    # The caller's content type wins, whatever its case.
    given = Task("text", headers={"CoNtEnT-TyPe": "mine"})
    assert given.headers == {"CoNtEnT-TyPe": "mine", **NAMESPACE}


def test_the_namespace_header_is_added_and_counted():
    task = Task(b"12345", url="/path")
    assert task.headers["X-AppEngine-Current-Namespace"] == ""
    assert task.size == len("POST") + 5 + len("/path") + len("X-AppEngine-Current-Namespace: \r\n")


def test_caller_directives_reach_the_handler_and_queue_headers_cannot_be_forged(recorded):
    taskqueue.add(
        url="/echo",
        name="direct",
        headers={"X-AppEngine-FailFast": "true", "x-appengine-queuename": "forged"},
    )
    run_tasks()
    [request] = recorded()
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-appengine-failfast"] == "true"
    assert headers["x-appengine-queuename"] == "default"
    assert headers["x-appengine-taskname"] == "direct"


# -- 3. types --------------------------------------------------------------------------------


def test_a_str_payload_built_from_params_is_stored_as_bytes():
    task = taskqueue.add(url="/echo", params={"a": "1", "b": ["x", "y"]})
    assert task.payload == "a=1&b=x&b=y"
    [stored] = get_filtered_tasks(name=task.name)
    assert stored.payload == b"a=1&b=x&b=y"
    assert stored.extract_params() == {b"a": b"1", b"b": [b"x", b"y"]}


# -- 4. dispatch deadline --------------------------------------------------------------------


def test_dispatch_deadline_constants_and_validation():
    assert taskqueue.MIN_DISPATCH_DEADLINE == datetime.timedelta(seconds=15)
    assert taskqueue.MAX_DISPATCH_DEADLINE == datetime.timedelta(hours=24)
    assert Task().dispatch_deadline_usec is None
    assert Task(dispatch_deadline_usec=15_000_000).dispatch_deadline_usec == 15_000_000
    assert Task(dispatch_deadline_usec=86_400_000_000).dispatch_deadline_usec == 86_400_000_000
    with pytest.raises(TypeError):
        Task(dispatch_deadline_usec="a")
    with pytest.raises(taskqueue.InvalidDispatchDeadlineError):
        Task(dispatch_deadline_usec=14_999_999)
    with pytest.raises(taskqueue.InvalidDispatchDeadlineError):
        Task(dispatch_deadline_usec=86_401_000_000)


def test_dispatch_deadline_is_stored_for_push_tasks():
    task = taskqueue.add(url="/echo", dispatch_deadline_usec=30_000_000)
    assert TaskRecord.objects.get(name=task.name).dispatch_deadline_usec == 30_000_000
    [stored] = get_filtered_tasks(name=task.name)
    assert stored.dispatch_deadline_usec == 30_000_000


def _claimed(url: str, dispatch_deadline_usec: int | None) -> ClaimedTask:
    return ClaimedTask(
        id=1,
        queue_name="default",
        name="t",
        method="POST",
        url=url,
        headers=[],
        payload=b"",
        target=None,
        eta=FROZEN_AT,
        retry_count=0,
        execution_count=0,
        retry_options=None,
        first_attempt_at=FROZEN_AT,
        last_response_code=None,
        last_retry_reason=None,
        dispatch_deadline_usec=dispatch_deadline_usec,
    )


def test_an_in_process_attempt_over_its_own_deadline_fails_and_is_logged(monkeypatch, caplog):
    elapsed = {"now": 0.0}
    monkeypatch.setattr("django_taskqueue.clock.monotonic", lambda: elapsed["now"])

    def twenty_seconds(call: direct.DirectCall) -> None:
        elapsed["now"] += 20

    direct.register("/deadline-test", twenty_seconds)
    deliverer = Deliverer(deadline_seconds=600)
    caplog.set_level(logging.WARNING, logger="django_taskqueue")
    outcome = deliverer.deliver(_claimed("/deadline-test", 15_000_000), None)
    assert not outcome.succeeded and outcome.reason == "deadline exceeded"
    assert "event=deadline_overrun" in caplog.text
    assert deliverer.deliver(_claimed("/deadline-test", 30_000_000), None).succeeded
    assert deliverer.deliver(_claimed("/deadline-test", None), None).succeeded


def test_the_lease_covers_a_task_deadline_longer_than_the_workers():
    seen: dict[str, Any] = {}

    def look_at_the_lease(call: direct.DirectCall) -> None:
        seen["eta"] = TaskRecord.objects.get(id=call.task_id).eta

    direct.register("/lease-test", look_at_the_lease)
    with override_settings(
        TASKQUEUE={
            "QUEUE_YAML": TESTS_DIR / "fixtures" / "queue.yaml",
            "DEFAULT_DEADLINE_SECONDS": 20,
            "LEASE_MARGIN_SECONDS": 5,
        }
    ):
        started = datetime.datetime.now(datetime.UTC)
        taskqueue.add(url="/lease-test", dispatch_deadline_usec=3_600_000_000)
        assert run_tasks() == 1
    assert seen["eta"] >= started + datetime.timedelta(seconds=3600)


# -- 5. constructor edge cases ---------------------------------------------------------------


def test_constructor_edge_cases(frozen_clock):
    assert Task(name="").name is None
    assert Task(countdown="10").eta == FROZEN_AT + datetime.timedelta(seconds=10)
    assert Task(countdown="2.5").eta == FROZEN_AT + datetime.timedelta(seconds=2.5)
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(countdown="ten")
    assert Task("").payload == b""
    assert Task(b"").payload == b""
    assert Task("").headers == NAMESPACE  # no content type for an empty body
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(method="PULL")


def test_retry_options_types():
    assert taskqueue.TaskRetryOptions(max_doublings=2.5).max_doublings == 2.5
    assert taskqueue.TaskRetryOptions(task_retry_limit=3).task_retry_limit == 3
    assert taskqueue.TaskRetryOptions(task_age_limit=1.2).task_age_limit == 2
    with pytest.raises(TypeError):
        taskqueue.TaskRetryOptions(min_backoff_seconds="1")
    with pytest.raises(taskqueue.InvalidTaskRetryOptionsError):
        taskqueue.TaskRetryOptions(max_doublings=-1)


# -- 8. default in pull mode -----------------------------------------------------------------


def test_default_may_be_a_pull_queue():
    with override_settings(TASKQUEUE={"QUEUES": {"default": {"mode": "pull"}}}):
        taskqueue.add(b"work", method="PULL")
        [task] = Queue().lease_tasks(60, 10)
        assert task.payload == b"work"


# -- 9. statistics ---------------------------------------------------------------------------


def test_queue_statistics_compare_by_value():
    queue = Queue()
    assert QueueStatistics(queue, 10, 20) == QueueStatistics(queue, 10, 20)
    assert QueueStatistics(queue, 10, 20) != QueueStatistics(queue, 11, 20)
    assert QueueStatistics.fetch([]) == []
    assert "tasks=10" in repr(QueueStatistics(queue, 10, 20))


def test_statistics_of_an_empty_and_an_unknown_queue():
    assert Queue().fetch_statistics().oldest_eta_usec is None
    assert Queue("pull-queue").fetch_statistics().in_flight is None
    [known, unknown] = QueueStatistics.fetch(["default", "not-configured"])
    assert known.tasks == 0
    assert unknown == QueueStatistics(Queue("not-configured"), tasks=0)


# -- 10. synchronous calls go through their async twins --------------------------------------


def test_sync_calls_go_through_the_async_twins(monkeypatch):
    calls: list[str] = []
    for name in ("add_async", "lease_tasks_async", "delete_tasks_async", "fetch_statistics_async"):
        original = getattr(Queue, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Queue, name, spy)
    task = Queue().add(Task(url="/echo"))
    Task(url="/echo").add()
    Queue("pull-queue").lease_tasks(10, 1)
    Queue().delete_tasks(task)
    Queue().delete_tasks_by_name("unknown")
    Queue().fetch_statistics()
    assert calls == [
        "add_async",
        "add_async",
        "lease_tasks_async",
        "delete_tasks_async",
        "delete_tasks_async",
        "fetch_statistics_async",
    ]


def test_an_rpc_passed_in_carries_the_result():
    done = []
    rpc = taskqueue.create_rpc(deadline=5, callback=lambda: done.append(True))
    assert Queue().add_async(Task(url="/echo", name="by-rpc"), rpc=rpc) is rpc
    rpc.wait()
    assert rpc.get_result().name == "by-rpc"
    assert done == [True]
    failing = taskqueue.create_rpc()
    Queue().add_async(Task(url="/echo", name="by-rpc"), rpc=failing)
    with pytest.raises(taskqueue.TaskAlreadyExistsError):
        failing.get_result()


# -- 11. deferred: handler, include -----------------------------------------------------------


@override_settings(ROOT_URLCONF="tests.deferred_include_urls")
def test_deferred_urls_can_be_included():
    task = deferred.defer(targets.add, 2, 3, _url="/app/_ah/queue/deferred")
    assert run_tasks() == 1
    assert deferred.get_result(task.name).status == deferred.ResultStatus.SUCCESSFUL


def test_the_wsgi_handler_refuses_unsigned_requests():
    import io

    body = deferred.serialize(targets.add, 2, 3)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/_ah/queue/deferred",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_X_APPENGINE_TASKNAME": "forged",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }
    body_text, status, headers = deferred.Handler().post(environ)
    assert status == 403 and headers == [("Content-Type", "text/plain")]
    assert isinstance(deferred.application, deferred.Handler)


# -- 12. the testbed stub --------------------------------------------------------------------


def test_the_stub_names_tasks_in_sequence_while_active():
    with TaskQueueStub() as stub:
        first = taskqueue.add(url="/echo")
        second = Queue("fast").add(Task(url="/echo"))
        named = taskqueue.add(url="/echo", name="mine")
        d = deferred.defer(targets.add, 1, 1)
        assert [first.name, second.name, named.name, d.name] == ["task1", "task2", "mine", "task3"]
        [entry] = [t for t in stub.GetTasks("default") if t["name"] == "task3"]
        assert entry["url"] == "/_ah/queue/deferred"
        assert deferred.run(__import__("base64").b64decode(entry["body"])) == 2
        assert [t.name for t in stub.get_filtered_tasks(queue_names="fast")] == ["task2"]
    assert len(taskqueue.add(url="/echo").name) == 32


def test_the_stub_flushes_deletes_and_runs(recorded):
    with TaskQueueStub() as stub:
        taskqueue.add(url="/echo", name="a")
        taskqueue.add(url="/echo", name="b")
        taskqueue.add(url="/echo", name="later", countdown=60)
        stub.DeleteTask("default", "a")
        taskqueue.add(url="/echo", name="a")  # no tombstone: the name is free again
        assert stub.run_due_tasks() == 2
        assert sorted(r["headers"]["X-Appengine-Taskname"] for r in recorded()) == ["a", "b"]
        assert [t["name"] for t in stub.GetTasks("default")] == ["later"]
        stub.FlushQueue("default")
        assert stub.GetTasks("default") == []
        taskqueue.add(url="/echo", name="b")  # tombstones flushed too
        queues = {q["name"]: q for q in stub.GetQueues()}
        assert queues["default"]["tasks_in_queue"] == 1
        assert queues["pull-queue"]["mode"] == "pull"


def test_empty_retry_options_are_not_stored():
    # App Engine's client sends no retry parameters for a TaskRetryOptions with nothing set.
    task = taskqueue.add(url="/echo", retry_options=taskqueue.TaskRetryOptions())
    assert TaskRecord.objects.get(name=task.name).retry_options is None


@pytest.mark.django_db(transaction=True)
def test_transactional_outside_a_transaction_is_checked_before_the_queue_mode():
    with pytest.raises(taskqueue.BadTransactionStateError):
        taskqueue.add(method="PULL", payload="payload", transactional=True)


def test_an_http_attempt_times_out_at_the_tasks_own_deadline(settings):
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            time.sleep(3)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {"slow": base}}
        deliverer = Deliverer(deadline_seconds=600)
        # Below App Engine's 15 s minimum, built directly: the deliverer is what is tested.
        outcome = deliverer.deliver(_claimed("/slow", 300_000), "slow")
        deliverer.close()
    finally:
        server.shutdown()
        server.server_close()
    assert not outcome.succeeded and outcome.reason == "deadline exceeded"
    assert outcome.duration < 2.5
