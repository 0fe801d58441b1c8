"""The push worker in-process: delivery, headers, outcomes, retries, limits, run_tasks."""

from __future__ import annotations

import datetime
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from django_taskqueue import security, signals
from django_taskqueue.conf import taskqueue_settings
from django_taskqueue.dispatch import direct
from django_taskqueue.dispatch.claim import claim
from django_taskqueue.dispatch.delivery import delivery_host
from django_taskqueue.dispatch.worker import Worker
from django_taskqueue.models import QueueState, TaskRecord, TaskState
from django_taskqueue.queues import get_queue_config
from django_taskqueue.taskqueue import Queue, Task, TaskRetryOptions
from django_taskqueue.testing import run_tasks

from ..conftest import FROZEN_AT, claim_now, row

pytestmark = pytest.mark.django_db


# -- what a handler receives ----------------------------------------------------------------


class TestRequest:
    def test_first_attempt_method_url_body_and_headers(self, recorder, frozen_clock):
        Queue("default").add(
            Task(b"\x00body", name="first", url="/echo", headers={"X-Custom": "yes"})
        )
        assert run_tasks() == 1
        [seen] = recorder.entries()
        assert seen["method"] == "POST"
        assert seen["path"] == "/echo"
        assert seen["body"] == "\x00body"
        assert seen["remote_addr"] == "0.1.0.2"
        assert seen["signed"] is True
        h = seen["headers"]
        assert h["X-Custom"] == "yes"
        assert h["Content-Type"] == "application/octet-stream"
        assert h["Host"] == delivery_host()  # "testserver" under the test runner
        assert h["X-Appengine-Queuename"] == "default"
        assert h["X-Appengine-Taskname"] == "first"
        assert h["X-Appengine-Taskretrycount"] == "0"
        assert h["X-Appengine-Taskexecutioncount"] == "0"
        assert float(h["X-Appengine-Tasketa"]) == FROZEN_AT.timestamp()
        assert "X-Appengine-Taskpreviousresponse" not in h
        assert "X-Appengine-Taskretryreason" not in h
        assert h["X-Taskqueue-Signature"].startswith("v2:")
        task = row("first")
        assert task.state == TaskState.SUCCEEDED
        assert task.last_response_code == 200
        assert task.execution_count == 1
        assert task.first_attempt_at == FROZEN_AT

    def test_get_with_query_and_default_url(self, recorder, frozen_clock):
        Queue("fast").add(
            [Task(method="GET", url="/echo?a=1&b=two", name="get"), Task(name="default-url")]
        )
        assert run_tasks("fast") == 2
        by_path = {e["path"]: e for e in recorder.entries()}
        assert by_path["/echo"]["method"] == "GET"
        assert by_path["/echo"]["query"] == "a=1&b=two"
        assert by_path["/_ah/queue/fast"]["method"] == "POST"

    def test_str_payload_and_params_content_types(self, recorder, frozen_clock):
        Queue("fast").add(
            [
                Task("text", url="/echo", name="text"),
                Task(params={"k": "v"}, url="/echo", name="form"),
            ]
        )
        run_tasks("fast")
        types = sorted(e["headers"]["Content-Type"] for e in recorder.entries())
        assert types == ["application/x-www-form-urlencoded", "text/plain; charset=utf-8"]
        assert sorted(e["body"] for e in recorder.entries()) == ["k=v", "text"]

    def test_retry_carries_retry_headers(self, recorder, frozen_clock):
        Queue("default").add(Task(b"x", name="again", url="/fail-first"))
        assert run_tasks() == 1
        task = row("again")
        assert task.state == TaskState.QUEUED
        assert task.retry_count == 1
        assert task.execution_count == 1
        assert task.last_response_code == 503
        retry_eta = task.eta
        assert retry_eta == FROZEN_AT + datetime.timedelta(seconds=0.1)
        assert run_tasks() == 0  # not due yet
        frozen_clock.advance(0.1)
        assert run_tasks() == 1
        first, second = recorder.entries()
        assert first["headers"]["X-Appengine-Taskretrycount"] == "0"
        h = second["headers"]
        assert second["body"] == "x"
        assert second["path"] == "/fail-first"
        assert h["X-Appengine-Taskretrycount"] == "1"
        assert h["X-Appengine-Taskexecutioncount"] == "1"
        assert h["X-Appengine-Taskpreviousresponse"] == "503"
        assert h["X-Appengine-Taskretryreason"] == "HTTP 503"
        assert float(h["X-Appengine-Tasketa"]) == retry_eta.timestamp()
        task = row("again")
        assert task.state == TaskState.SUCCEEDED
        assert task.first_attempt_at == FROZEN_AT

    @override_settings(ALLOWED_HOSTS=[".wild.example", "*", "tasks.example.com"])
    def test_host_is_first_plain_allowed_host(self, recorder, frozen_clock):
        assert delivery_host() == "tasks.example.com"
        Queue("default").add(Task(url="/echo"))
        run_tasks()
        assert recorder.entries()[0]["headers"]["Host"] == "tasks.example.com"

    def test_host_setting_wins(self, settings):
        settings.TASKQUEUE = {**settings.TASKQUEUE, "DELIVERY_HOST": "internal.test"}
        assert delivery_host() == "internal.test"


# -- outcomes -------------------------------------------------------------------------------


class TestOutcomes:
    def test_view_exception_is_retried_with_its_traceback(self, recorder, frozen_clock):
        Queue("default").add(Task(name="boom", url="/boom"))
        assert run_tasks() == 1
        task = row("boom")
        assert task.state == TaskState.QUEUED
        assert task.last_response_code == 500
        assert task.last_retry_reason == "builtins.RuntimeError"
        [error] = task.errors
        assert "RuntimeError: boom" in error["traceback"]
        assert error["attempt"] == 1
        assert "RuntimeError: boom" in task.last_error

    def test_non_2xx_is_a_failure(self, recorder, frozen_clock):
        Queue("default").add(Task(method="GET", name="nf", url="/echo?status=404"))
        run_tasks()
        task = row("nf")
        assert task.state == TaskState.QUEUED
        assert task.last_response_code == 404
        assert task.last_retry_reason == "HTTP 404"

    def test_no_retry_left_keeps_the_task_failed(self, recorder, frozen_clock):
        options = TaskRetryOptions(task_retry_limit=1)
        Queue("default").add(
            Task(method="GET", name="f", url="/echo?status=500", retry_options=options)
        )
        run_tasks()
        frozen_clock.advance(1)
        run_tasks()
        task = row("f")
        assert task.state == TaskState.FAILED
        assert task.finished_at == frozen_clock.now()
        assert task.last_response_code == 500
        assert task.retry_count == 2
        assert len(task.errors) == 2
        assert task.last_error == "HTTP 500"
        frozen_clock.advance(3600)
        assert run_tasks() == 0

    def test_deadline_overrun_fails_the_attempt(self, recorder, frozen_clock, settings):
        settings.TASKQUEUE = {**settings.TASKQUEUE, "DEFAULT_DEADLINE_SECONDS": 0.01}
        Queue("default").add(Task(method="GET", name="slow", url="/sleep?seconds=0.05"))
        run_tasks()
        task = row("slow")
        assert task.state == TaskState.QUEUED
        assert task.last_retry_reason == "deadline exceeded"
        assert task.last_response_code == 200

    def test_task_deleted_while_running_stays_deleted(self, frozen_clock):
        def handler(call):
            Queue(call.queue_name).delete_tasks_by_name(call.task_name)
            return "done"

        direct.register("/direct/delete-self", handler)
        try:
            Queue("default").add(Task(name="gone", url="/direct/delete-self"))
            assert run_tasks() == 1
        finally:
            direct._handlers.pop("/direct/delete-self")
        assert row("gone").state == TaskState.DELETED
        assert row("gone").return_value is None

    def test_signals_are_sent_with_documented_kwargs(self, recorder, frozen_clock):
        seen = []

        def on_started(sender, **kwargs):
            seen.append(("started", kwargs))

        def on_finished(sender, **kwargs):
            seen.append(("finished", kwargs))

        signals.task_attempt_started.connect(on_started)
        signals.task_attempt_finished.connect(on_finished)
        try:
            Queue("default").add(Task(name="sig", url="/fail-first"))
            run_tasks()
        finally:
            signals.task_attempt_started.disconnect(on_started)
            signals.task_attempt_finished.disconnect(on_finished)
        (kind1, started), (kind2, finished) = seen
        task_id = row("sig").id
        assert kind1 == "started"
        assert {k: started[k] for k in ("queue_name", "task_name", "task_id", "attempt")} == {
            "queue_name": "default",
            "task_name": "sig",
            "task_id": task_id,
            "attempt": 1,
        }
        assert started["worker_id"]
        assert kind2 == "finished"
        assert finished["succeeded"] is False
        assert finished["will_retry"] is True
        assert finished["status_code"] == 503
        assert finished["error"] is None
        assert finished["return_value"] is None


class TestDirectCalls:
    @pytest.fixture(autouse=True)
    def handlers(self):
        def ok(call):
            return {"attempt": call.attempt, "payload": call.payload.decode()}

        def permanent(call):
            raise direct.PermanentTaskFailure("no")

        def singular(call):
            raise direct.SingularTaskFailure()

        def broken(call):
            raise ValueError("bad")

        paths = {"/d/ok": ok, "/d/perm": permanent, "/d/single": singular, "/d/broken": broken}
        for path, handler in paths.items():
            direct.register(path, handler)
        yield
        for path in paths:
            direct._handlers.pop(path)

    def test_outcomes(self, frozen_clock):
        Queue("default").add(
            [
                Task(b"p", name="ok", url="/d/ok"),
                Task(name="perm", url="/d/perm"),
                Task(name="single", url="/d/single"),
                Task(name="broken", url="/d/broken"),
            ]
        )
        assert run_tasks() == 4
        ok = row("ok")
        assert ok.state == TaskState.SUCCEEDED
        assert ok.return_value == {"attempt": 1, "payload": "p"}
        perm = row("perm")
        assert perm.state == TaskState.FAILED
        assert "PermanentTaskFailure" in perm.last_error
        single = row("single")
        assert single.state == TaskState.QUEUED
        assert single.errors == []
        assert single.last_response_code == 408
        broken = row("broken")
        assert broken.state == TaskState.QUEUED
        assert "ValueError: bad" in broken.errors[0]["traceback"]


class TestPrefetch:
    """One claim takes several tasks per free slot; unstarted ones go back when they must."""

    @pytest.fixture(autouse=True)
    def handlers(self, frozen_clock):
        self.ran = []
        frozen_clock.freeze_monotonic()

        def record(call):
            self.ran.append(call.task_name)

        def slow(call):
            # Takes all of the lease's margin: the tasks behind it can no longer be started.
            self.ran.append(call.task_name)
            frozen_clock.advance(taskqueue_settings.LEASE_MARGIN_SECONDS + 1)

        def stop(call):
            self.ran.append(call.task_name)
            self.worker.stop()

        def pause(call):
            self.ran.append(call.task_name)
            frozen_clock.advance(1.1)  # past the pending-success timer (monotonic, frozen)

        def probe(call):
            self.ran.append(call.task_name)
            self.seen = row("quick", "fast").state

        paths = {
            "/p/record": record,
            "/p/slow": slow,
            "/p/stop": stop,
            "/p/pause": pause,
            "/p/probe": probe,
        }
        for path, handler in paths.items():
            direct.register(path, handler)
        yield
        for path in paths:
            direct._handlers.pop(path)

    def add(self, names, url="/p/record"):
        for i, name in enumerate(names):
            Queue("fast").add(Task(name=name, url=url, countdown=-100 + i))

    def test_one_claim_serves_several_attempts(self, frozen_clock):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        self.add([f"t{i}" for i in range(10)])
        self.worker = Worker(["fast"], burst=True, prefetch=5, run_sweeps=False)
        with CaptureQueriesContext(connection) as queries:
            assert self.worker.run() == 10
        assert self.ran == [f"t{i}" for i in range(10)]
        # Each claim marks its tasks RUNNING in one UPDATE: two claims of five. On PostgreSQL a
        # claim is one statement (prepared outside transactions), run once more to find the
        # queue empty.
        if connection.vendor == "postgresql":
            marks, expected = re.compile(r"^(EXECUTE taskqueue_|WITH st AS MATERIALIZED)"), 3
        else:
            marks, expected = re.compile(r"SET [`\"]state[`\"] = 'running'"), 2
        assert sum(bool(marks.search(q["sql"])) for q in queries.captured_queries) == expected

    @staticmethod
    def claims(queries) -> int:
        from django.db import connection

        if connection.vendor == "postgresql":
            marks = re.compile(r"^(EXECUTE taskqueue_|WITH st AS MATERIALIZED)")
        else:
            marks = re.compile(r"SET [`\"]state[`\"] = 'running'")
        return sum(bool(marks.search(q["sql"])) for q in queries.captured_queries)

    def test_quick_attempts_grow_the_claims_without_a_prefetch(self, frozen_clock):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        self.add([f"t{i}" for i in range(70)])
        self.worker = Worker(["fast"], burst=True, run_sweeps=False)
        with CaptureQueriesContext(connection) as queries:
            assert self.worker.run() == 70
        assert self.ran == [f"t{i}" for i in range(70)]
        # 20 before any attempt is measured, then the other 50 at once (up to 100 per slot);
        # PostgreSQL's claim runs once more to find the queue empty.
        assert self.claims(queries) == (3 if connection.vendor == "postgresql" else 2)

    def test_an_explicit_prefetch_is_kept_however_quick_the_attempts(self, frozen_clock):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        self.add([f"t{i}" for i in range(70)])
        self.worker = Worker(["fast"], burst=True, prefetch=20, run_sweeps=False)
        with CaptureQueriesContext(connection) as queries:
            assert self.worker.run() == 70
        assert self.claims(queries) == (5 if connection.vendor == "postgresql" else 4)

    def test_slow_attempts_keep_the_default_prefetch(self, frozen_clock):
        worker = Worker(["fast"], burst=True, run_sweeps=False)
        assert worker._claim_capacity() == 20
        worker._attempt_seconds = 0.05  # 5 in 0.25 s: fewer than the default
        assert worker._claim_capacity() == 20
        worker._attempt_seconds = 0.005  # 50 in 0.25 s
        assert worker._claim_capacity() == 50
        worker._attempt_seconds = 0.0001
        assert worker._claim_capacity() == 100  # batch_size

    def test_unstarted_tasks_go_back_when_the_worker_stops(self, frozen_clock):
        self.add(["first"], url="/p/stop")
        self.add(["second", "third"])
        self.worker = Worker(["fast"], prefetch=5, run_sweeps=False)
        assert self.worker.run() == 1
        assert self.ran == ["first"]
        for name in ("second", "third"):
            waiting = row(name, "fast")
            assert (waiting.state, waiting.worker_id) == (TaskState.QUEUED, None)
            assert waiting.execution_count == 0
        assert row("first", "fast").state == TaskState.SUCCEEDED

    def test_successes_are_not_held_back_behind_slow_attempts(self, frozen_clock):
        self.add(["quick"])
        self.add(["slow-one"], url="/p/pause")
        self.add(["probe"], url="/p/probe")
        self.worker = Worker(["fast"], burst=True, prefetch=5, run_sweeps=False)
        assert self.worker.run() == 3
        # Written before the probe started, not at the end of the claim's batch.
        assert self.seen == TaskState.SUCCEEDED

    def test_a_task_whose_lease_ran_short_goes_back_unrun(self, frozen_clock):
        self.add(["slow"], url="/p/slow")
        self.add(["behind"])
        self.worker = Worker(["fast"], burst=True, prefetch=5, run_sweeps=False)
        self.worker.run()
        # "behind" was released, claimed again by the next round, and then ran.
        assert self.ran == ["slow", "behind"]
        assert row("behind", "fast").state == TaskState.SUCCEEDED
        assert row("behind", "fast").retry_count == 0


# -- the retry schedule of reference §4.4, through the worker --------------------------------


def delays_of(queue_name, frozen_clock, failures):
    """Fail one task `failures` times; return the delays the worker scheduled."""
    Queue(queue_name).add(Task(method="GET", name="sched", url="/echo?status=500"))
    delays = []
    for _ in range(failures):
        assert run_tasks(queue_name) == 1
        task = row("sched", queue_name)
        delay = (task.eta - frozen_clock.now()).total_seconds()
        delays.append(round(delay, 6))
        frozen_clock.set(task.eta)
    return delays


class TestRetrySchedule:
    def test_default_parameters(self, frozen_clock):
        delays = delays_of("default", frozen_clock, 17)
        assert delays[:7] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]
        assert delays[9] == 51.2
        assert delays[15] == 3276.8
        assert delays[16] == 3600.0

    def test_bazqueue(self, frozen_clock):
        delays = delays_of("bazqueue", frozen_clock, 10)
        assert delays == [10, 20, 40, 80, 160, 240, 300, 300, 300, 300]

    def test_barqueue(self, frozen_clock):
        delays = delays_of("barqueue", frozen_clock, 20)
        assert delays[:7] == [10, 20, 30, 40, 50, 60, 70]
        assert delays[9] == 100
        assert delays[15] == 160
        assert delays[16] == 170
        assert delays[19] == 200

    def test_fooqueue_stops_only_when_both_limits_are_exceeded(self, frozen_clock):
        # task_retry_limit 7, task_age_limit 2d: the 8th and later failures still retry
        # while the task is younger than two days.
        delays_of("fooqueue", frozen_clock, 9)
        task = row("sched", "fooqueue")
        assert task.state == TaskState.QUEUED
        assert task.retry_count == 9
        # Two days after the first attempt (plus a second), the next failure is the last.
        frozen_clock.set(FROZEN_AT + datetime.timedelta(days=2, seconds=1))
        assert run_tasks("fooqueue") == 1
        task = row("sched", "fooqueue")
        assert task.state == TaskState.FAILED
        assert task.first_attempt_at == FROZEN_AT


# -- HTTP delivery --------------------------------------------------------------------------


class _Recording(BaseHTTPRequestHandler):
    received: list = []

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.append(
            {"method": self.command, "path": self.path, "body": body, "headers": dict(self.headers)}
        )
        status = 500 if "fail" in self.path else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    _Recording.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Recording.received
    server.shutdown()
    server.server_close()


class TestHttpDelivery:
    def test_task_with_target_goes_over_http(self, http_server, settings, frozen_clock):
        server, received = http_server
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {"remote": base + "/svc/"}}
        Queue("default").add(
            [
                Task(b"over http", name="h1", url="/work/1", target="remote"),
                Task(method="GET", name="h2", url="/fail?x=1", target="remote"),
            ]
        )
        assert run_tasks() == 2
        by_path = {r["path"]: r for r in received}
        first = by_path["/svc/work/1"]
        assert first["method"] == "POST"
        assert first["body"] == b"over http"
        assert first["headers"]["X-AppEngine-QueueName"] == "default"
        assert first["headers"]["X-AppEngine-TaskName"] == "h1"
        assert first["headers"]["X-AppEngine-TaskRetryCount"] == "0"
        assert first["headers"]["Content-Type"] == "application/octet-stream"
        # The signature covers the path the server sees, the base URL's path included.
        signature = first["headers"]["X-TaskQueue-Signature"]
        _, task_id, attempt, timestamp, names, mac = signature.split(":")
        sent = {k.lower(): v for k, v in first["headers"].items()}
        message = security._message(
            "default",
            "h1",
            int(task_id),
            int(attempt),
            "POST",
            "/svc/work/1",
            b"over http",
            timestamp,
            [(name, sent[name]) for name in names.split(",")],
        )
        assert security._mac(taskqueue_settings.signing_key(), message) == mac
        assert by_path["/svc/fail?x=1"]["method"] == "GET"
        assert row("h1").state == TaskState.SUCCEEDED
        assert row("h2").state == TaskState.QUEUED
        assert row("h2").last_response_code == 500

    def test_connection_refused_is_a_failed_attempt(self, settings, frozen_clock):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        settings.TASKQUEUE = {
            **settings.TASKQUEUE,
            "TARGETS": {"down": f"http://127.0.0.1:{port}"},
        }
        Queue("default").add(Task(name="down", url="/x", target="down"))
        run_tasks()
        task = row("down")
        assert task.state == TaskState.QUEUED
        assert task.retry_count == 1
        assert task.execution_count == 0  # the handler never ran
        assert task.last_retry_reason.startswith("connection error")


# -- claims: rate limits, concurrency, pause -----------------------------------------------


class TestClaims:
    def test_token_bucket_limits_a_claim(self, frozen_clock):
        Queue("default").add([Task(url="/echo") for _ in range(10)])
        QueueState.objects.create(name="default")
        first = claim_now("default", frozen_clock)
        assert len(first.tasks) == 5  # a full bucket: bucket_size 5
        second = claim_now("default", frozen_clock)
        assert second.tasks == []
        assert second.throttled
        assert second.wait_seconds == pytest.approx(0.2)
        frozen_clock.advance(0.4)
        assert len(claim_now("default", frozen_clock).tasks) == 2
        state = QueueState.objects.get(name="default")
        # Five tasks, then two 0.4 s later, with a 10 s time constant.
        assert state.enforced_rate == pytest.approx(0.5 * math.exp(-0.04) + 0.2)
        assert state.tokens == pytest.approx(0.0)

    def test_claim_marks_running_with_a_lease(self, frozen_clock):
        Queue("default").add(Task(url="/echo", name="c", countdown=-5))
        QueueState.objects.create(name="default")
        [task] = claim_now("default", frozen_clock).tasks
        assert task.eta == FROZEN_AT - datetime.timedelta(seconds=5)  # before the claim
        stored = row("c")
        assert stored.state == TaskState.RUNNING
        assert stored.eta == FROZEN_AT + datetime.timedelta(seconds=60)
        assert stored.worker_id == "w1"
        assert stored.leased_at == FROZEN_AT
        assert stored.first_attempt_at == FROZEN_AT

    def test_priority_then_eta_order(self, frozen_clock):
        tasks = [Task(url="/echo", name=f"t{i}", countdown=-10 + i) for i in range(3)]
        tasks[2]._priority = 5
        Queue("fast").add(tasks)
        QueueState.objects.create(name="fast")
        claimed = claim_now("fast", frozen_clock).tasks
        assert [t.name for t in claimed] == ["t2", "t0", "t1"]

    def test_max_concurrent_requests_counts_running_tasks(self, frozen_clock):
        Queue("throttled").add([Task(url="/echo") for _ in range(3)])
        QueueState.objects.create(name="throttled")
        assert len(claim_now("throttled", frozen_clock).tasks) == 1
        frozen_clock.advance(10)  # plenty of tokens, but one task is running
        result = claim_now("throttled", frozen_clock, worker_id="w2")
        assert result.tasks == []
        assert result.throttled

    def test_paused_queues_dispatch_nothing(self, recorder, frozen_clock):
        Queue("paused").add(Task(url="/echo"))
        Queue("default").add(Task(url="/echo"))
        Queue("default").pause()
        assert run_tasks() == 0
        assert run_tasks(["paused", "default"]) == 0
        assert recorder.entries() == []
        Queue("default").resume()
        assert run_tasks() == 1

    def test_missing_queue_state_is_created(self, frozen_clock):
        Queue("fast").add(Task(url="/echo"))
        assert claim_now("fast", frozen_clock).tasks == []
        assert row_states("fast") == {TaskState.QUEUED: 1}  # not claimed without a bucket
        assert QueueState.objects.filter(name="fast").exists()
        assert len(claim_now("fast", frozen_clock).tasks) == 1

    @pytest.mark.parametrize(
        ("tokens", "tokens_at", "enforced_rate", "claimed"),
        [
            (0.0, None, None, 5),  # a bucket never used starts full (bucket_size 5)
            (1.5, -0.3, None, 3),  # 1.5 + 0.3 s at 5/s = 3.0 tokens
            (0.2, -0.1, 2.0, 0),  # 0.7 tokens: nothing yet, the rate still decays
            (4.0, -60, 3.5, 5),  # refilled past the bucket: 5, not 304
            (2.0, +5, 1.0, 2),  # a clock behind the stored time adds nothing
            (-1.2, -0.5, 0.5, 1),  # a debt is paid back first: -1.2 + 2.5 = 1.3
        ],
    )
    def test_bucket_written_back_as_the_arithmetic_says(
        self, frozen_clock, tokens, tokens_at, enforced_rate, claimed
    ):
        # Every vendor's claim (PostgreSQL's is one SQL statement) against the Python functions.
        from django_taskqueue import ratelimit

        now = frozen_clock.now()
        at = now + datetime.timedelta(seconds=tokens_at) if tokens_at is not None else None
        QueueState.objects.create(
            name="default", tokens=tokens, tokens_at=at, enforced_rate=enforced_rate
        )
        Queue("default").add([Task(url="/echo") for _ in range(8)])
        result = claim_now("default", frozen_clock, max_tasks=8)
        assert len(result.tasks) == claimed
        level = ratelimit.refill(tokens, at, now, 5.0, 5) - claimed
        state = QueueState.objects.get(name="default")
        assert state.tokens == pytest.approx(level, abs=1e-9)
        # Never back in time: a clock behind the stored time leaves it where it was.
        assert state.tokens_at == (now if at is None else max(at, now))
        assert state.enforced_rate == pytest.approx(
            ratelimit.measured_rate(enforced_rate, at, now, claimed), abs=1e-9
        )
        assert result.throttled  # held back by the bucket, with due tasks left
        assert result.wait_seconds == pytest.approx(ratelimit.seconds_until_token(level, 5.0))

    def test_a_claim_within_the_tokens_is_not_throttled(self, frozen_clock):
        QueueState.objects.create(name="default")
        Queue("default").add([Task(url="/echo") for _ in range(3)])
        result = claim_now("default", frozen_clock, max_tasks=4)
        assert len(result.tasks) == 3
        assert not result.throttled
        assert result.wait_seconds is None
        assert QueueState.objects.get(name="default").tokens == pytest.approx(2.0)

    def test_a_paused_state_row_claims_nothing_and_keeps_its_bucket(self, frozen_clock):
        QueueState.objects.create(name="default", paused=True, tokens=3.0)
        Queue("default").add(Task(url="/echo"))
        result = claim_now("default", frozen_clock)
        assert result.tasks == []
        assert not result.throttled
        state = QueueState.objects.get(name="default")
        assert (state.tokens, state.tokens_at) == (3.0, None)
        assert row_states("default") == {TaskState.QUEUED: 1}

    def test_without_rate_limits_the_bucket_is_neither_read_nor_written(self, frozen_clock):
        QueueState.objects.create(name="default", tokens=0.0, tokens_at=frozen_clock.now())
        Queue("default").add([Task(url="/echo") for _ in range(8)])
        result = claim(
            "default",
            get_queue_config("default"),
            now=frozen_clock.now(),
            worker_id="w1",
            max_tasks=100,
            lease_seconds=60,
            rate_limits=False,
        )
        assert len(result.tasks) == 8
        state = QueueState.objects.get(name="default")
        assert (state.tokens, state.enforced_rate) == (0.0, None)


class TestBatchedSuccesses:
    def test_only_the_tasks_still_claimed_are_written(self, frozen_clock):
        from django_taskqueue.db import operations
        from django_taskqueue.dispatch.outcome import record_successes

        Queue("fast").add([Task(url="/echo", name=f"s{i}") for i in range(4)])
        QueueState.objects.create(name="fast")
        claimed = claim_now("fast", frozen_clock).tasks
        assert len(claimed) == 4
        Queue("fast").delete_tasks_by_name("s1")  # deleted while it ran
        TaskRecord.objects.filter(name="s2").update(worker_id="other")  # rescued and re-claimed
        frozen_clock.advance(1)
        done = [(t.id, t.leased_at, 200) for t in claimed]
        written = record_successes("default", "w1", done, now=frozen_clock.now())
        assert written == {claimed[0].id, claimed[3].id}
        assert {r.name: r.state for r in TaskRecord.objects.filter(queue_name="fast")} == {
            "s0": TaskState.SUCCEEDED,
            "s1": TaskState.DELETED,
            "s2": TaskState.RUNNING,
            "s3": TaskState.SUCCEEDED,
        }
        s0 = row("s0", "fast")
        assert (s0.finished_at, s0.last_response_code, s0.execution_count) == (
            frozen_clock.now(),
            200,
            1,
        )
        # A second write of the same successes finds nothing left to write.
        assert (
            operations("default").mark_succeeded(
                [claimed[0].id], "w1", claimed[0].leased_at, 200, frozen_clock.now()
            )
            == set()
        )

    def test_two_claims_and_status_codes_are_written_together(self, frozen_clock):
        from django_taskqueue.dispatch.outcome import record_successes

        Queue("fast").add([Task(url="/echo", name=f"s{i}") for i in range(3)])
        QueueState.objects.create(name="fast")
        first = claim_now("fast", frozen_clock, max_tasks=2).tasks
        frozen_clock.advance(0.5)
        second = claim_now("fast", frozen_clock, max_tasks=2).tasks
        done = [(first[0].id, first[0].leased_at, 200), (first[1].id, first[1].leased_at, 204)]
        done.append((second[0].id, second[0].leased_at, 200))
        written = record_successes("default", "w1", done, now=frozen_clock.now())
        assert written == {t.id for t in first + second}
        codes = dict(TaskRecord.objects.values_list("name", "last_response_code"))
        assert codes == {"s0": 200, "s1": 204, "s2": 200}


def row_states(queue_name):
    rows = TaskRecord.objects.filter(queue_name=queue_name).values_list("state", flat=True)
    states = {}
    for state in rows:
        states[state] = states.get(state, 0) + 1
    return states


@pytest.mark.django_db(transaction=True)
def test_claims_go_on_after_the_session_forgets_its_prepared_statements(frozen_clock):
    # PostgreSQL claims with a statement prepared once per session; a pooler's DISCARD ALL
    # (here DEALLOCATE ALL) drops it, and the next claim prepares it again. Elsewhere the
    # claim is a transaction with nothing prepared, and the same claims must work too.
    from django.db import connection

    QueueState.objects.create(name="fast")
    Queue("fast").add([Task(url="/echo") for _ in range(2)])
    assert len(claim_now("fast", frozen_clock, max_tasks=1).tasks) == 1
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
    assert len(claim_now("fast", frozen_clock, max_tasks=1).tasks) == 1
    assert row_states("fast") == {TaskState.RUNNING: 2}


# -- the command and the threaded worker ----------------------------------------------------


class TestCommand:
    def test_rejects_pull_and_unknown_queues(self):
        with pytest.raises(CommandError, match="not a push queue"):
            call_command("runtaskworker", "--queue", "pull-queue", "--burst")
        with pytest.raises(CommandError, match="Unknown queue"):
            call_command("runtaskworker", "--queue", "nope", "--burst")
        with pytest.raises(CommandError):
            call_command("runtaskworker", "--concurrency", "0", "--burst")

    def test_burst_runs_due_tasks(self, recorder):
        Queue("fast").add([Task(url="/echo") for _ in range(3)])
        call_command("runtaskworker", "--queue", "fast", "--burst", verbosity=0)
        assert len(recorder.entries()) == 3


@pytest.mark.django_db(transaction=True)
class TestThreadedWorker:
    def test_concurrency_runs_everything_once(self, recorder):
        Queue("fast").add([Task(url="/echo", name=f"t{i}") for i in range(20)])
        worker = Worker(["fast"], concurrency=4, burst=True)
        assert worker.run() == 20
        assert sorted(e["headers"]["X-Appengine-Taskname"] for e in recorder.entries()) == sorted(
            f"t{i}" for i in range(20)
        )
        assert TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count() == 20

    def test_the_worker_keeps_its_connection_across_attempts(self, recorder, settings):
        # CONN_MAX_AGE=0 closes a web request's connections when it ends; in the worker an
        # attempt is one request among thousands, and reconnecting for each would be waste.
        from django.db.backends.signals import connection_created

        settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
        Queue("fast").add([Task(url="/echo") for _ in range(10)])
        opened = []

        def count(sender, connection, **kwargs):
            opened.append(connection.alias)

        connection_created.connect(count)
        try:
            # The heartbeat has a connection of its own, by design: not counted here.
            assert Worker(["fast"], burst=True, heartbeat=False).run() == 10
        finally:
            connection_created.disconnect(count)
        # So has the thread that writes the successes on PostgreSQL: one for the worker's
        # run, not one per attempt.
        assert opened == (["default"] if connection.vendor == "postgresql" else [])
        assert len(recorder.entries()) == 10

    def test_django_closes_request_connections_again_once_the_worker_stops(self, recorder):
        # While a worker runs, Django's end-of-request `close_old_connections` stays
        # disconnected, between attempts too (not switched off and on around each one); once
        # the run ends, the process's own requests close their connections again.
        from django.core.signals import request_finished, request_started
        from django.db import close_old_connections

        def connected(signal):
            return any(entry[0][0] == id(close_old_connections) for entry in signal.receivers)

        seen = []

        def after_attempt(**kwargs):
            seen.append((connected(request_started), connected(request_finished)))

        Queue("fast").add([Task(url="/echo") for _ in range(5)])
        assert connected(request_started) and connected(request_finished)
        signals.task_attempt_finished.connect(after_attempt)
        try:
            assert Worker(["fast"], burst=True, heartbeat=False).run() == 5
        finally:
            signals.task_attempt_finished.disconnect(after_attempt)
        assert seen == [(False, False)] * 5
        assert connected(request_started) and connected(request_finished)
        assert len(recorder.entries()) == 5

    def test_max_tasks_stops_the_worker(self, recorder):
        Queue("fast").add([Task(url="/echo") for _ in range(5)])
        assert Worker(["fast"], concurrency=2, max_tasks=3).run() == 3
        assert TaskRecord.objects.filter(state=TaskState.QUEUED).count() == 2


class TestBatchedClaims:
    def test_one_claim_takes_many_tasks_in_the_same_round_trips(self, frozen_clock):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        Queue("fast").add([Task(url="/echo") for _ in range(51)])
        QueueState.objects.create(name="fast")
        with CaptureQueriesContext(connection) as one:
            assert len(claim_now("fast", frozen_clock, max_tasks=1).tasks) == 1
        with CaptureQueriesContext(connection) as fifty:
            assert len(claim_now("fast", frozen_clock, max_tasks=50).tasks) == 50
        assert len(fifty.captured_queries) == len(one.captured_queries)
        assert len(fifty.captured_queries) <= 7


class TestLogging:
    def test_attempt_and_summary_lines(self, recorder, settings, caplog):
        settings.TASKQUEUE = {**settings.TASKQUEUE, "SUMMARY_INTERVAL_SECONDS": 1e-6}
        Queue("fast").add(
            [Task(url="/echo", name="a"), Task(url="/echo?status=500", method="GET", name="b")]
        )
        with caplog.at_level("INFO", logger="django_taskqueue"):
            Worker(["fast"], burst=True, run_sweeps=False).run()
        lines = [r.getMessage() for r in caplog.records]
        assert any(
            line.startswith("event=attempt queue=fast task=a attempt=1 status=succeeded code=200")
            and "duration=" in line
            for line in lines
        )
        assert any("task=b" in line and "status=retry code=500" in line for line in lines)
        assert any(line.startswith("event=summary") and "rate=" in line for line in lines)
        assert any(line.startswith("event=worker_stopped") and "failed=" in line for line in lines)
