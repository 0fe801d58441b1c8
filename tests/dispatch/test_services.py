"""The worker's services, each on its own: no Worker, no loop."""

from __future__ import annotations

import datetime
import logging
import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_taskqueue import clock, ratelimit
from django_taskqueue.db.rows import ClaimedTask
from django_taskqueue.db.sockets import wait_readable
from django_taskqueue.dispatch.batcher import SuccessBatcher
from django_taskqueue.dispatch.claimloop import ClaimRound
from django_taskqueue.dispatch.delivery import Outcome
from django_taskqueue.dispatch.executor import Executor
from django_taskqueue.dispatch.listener import Listener, Wakeup
from django_taskqueue.dispatch.recorder import AttemptStatus, OutcomeRecorder
from django_taskqueue.dispatch.sweeps import Pruner, Rescuer, Sweep, SweepScheduler
from django_taskqueue.dispatch.tally import Tally
from django_taskqueue.models import QueueState, TaskRecord, TaskState
from django_taskqueue.queues import get_queue_config
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import claim_now

pytestmark = pytest.mark.django_db


def row(name: str) -> TaskRecord:
    return TaskRecord.objects.get(name=name)


def claimed(frozen_clock, *names: str, queue: str = "default") -> list[ClaimedTask]:
    Queue(queue).add([Task(url="/x", name=name) for name in names])
    QueueState.objects.get_or_create(name=queue)
    return claim_now(queue, frozen_clock, max_tasks=len(names)).tasks


class TestOutcomeRecorder:
    def test_a_failure_is_retried_with_an_error_entry(self, frozen_clock):
        [task] = claimed(frozen_clock, "a")
        recorder = OutcomeRecorder("default", "w1")
        status = recorder.record(task, get_queue_config("default"), Outcome(False, 500, reason="x"))
        assert status is AttemptStatus.RETRY
        assert row("a").state == TaskState.QUEUED
        assert [e["reason"] for e in row("a").errors] == ["x"]

    def test_a_singular_failure_is_retried_without_an_error_entry(self, frozen_clock):
        [task] = claimed(frozen_clock, "a")
        singular = Outcome(False, 408, reason="anything", reports_error=False)
        status = OutcomeRecorder("default", "w1").record(
            task, get_queue_config("default"), singular
        )
        assert status is AttemptStatus.RETRY
        assert row("a").errors == []
        assert row("a").last_retry_reason == "anything"

    def test_a_failure_that_may_not_retry_fails(self, frozen_clock):
        [task] = claimed(frozen_clock, "a")
        permanent = Outcome(False, reason="no", may_retry=False)
        status = OutcomeRecorder("default", "w1").record(
            task, get_queue_config("default"), permanent
        )
        assert status is AttemptStatus.FAILED
        assert row("a").state == TaskState.FAILED

    def test_an_outcome_for_a_deleted_task_is_dropped(self, frozen_clock):
        [task] = claimed(frozen_clock, "a")
        Queue("default").delete_tasks_by_name("a")
        status = OutcomeRecorder("default", "w1").record(
            task, get_queue_config("default"), Outcome(True, 200, return_value=1)
        )
        assert status is AttemptStatus.DROPPED
        assert row("a").state == TaskState.DELETED

    def test_release(self, frozen_clock):
        [task] = claimed(frozen_clock, "a")
        OutcomeRecorder("default", "w1").release(task)
        assert (row("a").state, row("a").worker_id) == (TaskState.QUEUED, None)


class TestSuccessBatcher:
    def test_holds_successes_until_flushed_then_reports_each(self, frozen_clock):
        frozen_clock.freeze_monotonic()
        tasks = claimed(frozen_clock, "a", "b")
        reported = []
        batcher = SuccessBatcher(
            "default", "w1", lambda t, r, ok, c: reported.append((t.name, ok)), 1.0
        )
        for task in tasks:
            batcher.add(task, Outcome(True, 200), {})
        assert not batcher.overdue()
        frozen_clock.advance(1.5)
        assert batcher.overdue()
        assert row("a").state == TaskState.RUNNING  # nothing written yet
        batcher.flush()
        assert sorted(reported) == [("a", True), ("b", True)]
        assert {row("a").state, row("b").state} == {TaskState.SUCCEEDED}
        assert not batcher.overdue()
        batcher.flush()  # nothing left: no statement, no report
        assert len(reported) == 2

    @pytest.mark.django_db(transaction=True)
    def test_write_behind_writes_in_its_thread_and_reports_in_the_callers(self, frozen_clock):
        tasks = claimed(frozen_clock, "a", "b")
        reported, writers = [], []

        def write_behind(write):
            writers.append(threading.current_thread())
            return write()

        batcher = SuccessBatcher(
            "default",
            "w1",
            lambda t, r, ok, c: reported.append((t.name, ok, threading.current_thread())),
            1.0,
            write_behind=write_behind,
        )
        for task in tasks:
            batcher.add(task, Outcome(True, 200), {})
        batcher.flush()  # held for the next attempt's start
        assert (reported, writers, row("a").state) == ([], [], TaskState.RUNNING)
        batcher.hand_over()
        batcher.settle()  # waits for the write, then reports here
        assert writers and threading.current_thread() not in writers
        assert sorted((name, ok) for name, ok, _ in reported) == [("a", True), ("b", True)]
        assert {thread for *_, thread in reported} == {threading.current_thread()}
        assert {row("a").state, row("b").state} == {TaskState.SUCCEEDED}
        batcher.close()
        assert len(reported) == 2
        assert not any(thread.is_alive() for thread in writers)


class TestExecutor:
    def test_inline_runs_in_the_calling_thread(self, frozen_clock):
        [task] = claimed(frozen_clock, "a")
        threads = []
        executor = Executor(
            1, lambda t, c: threads.append(threading.current_thread()), lambda: None
        )
        executor.start()
        executor.submit(task, get_queue_config("default"))
        executor.shutdown()
        assert threads == [threading.current_thread()]
        assert executor.in_flight == 0

    def test_a_pool_runs_attempts_at_once_and_waits_for_them(self):
        started = threading.Barrier(3, timeout=30)
        done = []

        def attempt(task, config):
            started.wait()  # three attempts at once, or this times out
            done.append(task.name)

        task = ClaimedTask(
            1, "default", "a", "POST", "/x", [], None, None, clock.now(), 0, 0, None,
            clock.now(), None, None,
        )  # fmt: skip
        woken = []
        executor = Executor(3, attempt, lambda: woken.append(1))
        executor.start()
        for _ in range(3):
            executor.submit(task, get_queue_config("default"))
        executor.shutdown()
        assert done == ["a", "a", "a"]
        assert len(woken) == 3
        assert executor.in_flight == 0
        assert executor.free_slots() == 3


class TestClaimRound:
    def test_claims_each_queue_in_turn_within_capacity(self, frozen_clock):
        Queue("default").add([Task(url="/x", name=f"d{i}") for i in range(3)])
        Queue("fast").add([Task(url="/x", name=f"f{i}") for i in range(3)])
        for name in ("default", "fast"):
            QueueState.objects.create(name=name)
        submitted = []
        capacity = [4]

        def submit(task, config):
            submitted.append(task.name)
            capacity[0] -= 1

        claims = ClaimRound(
            "default",
            "w1",
            [get_queue_config("default"), get_queue_config("fast")],
            lease_seconds=60,
            rate_limits=False,
            poll_interval_seconds=1.0,
            capacity=lambda: capacity[0],
            submit=submit,
            stopping=lambda: False,
        )
        assert claims.run() == (4, False, 1.0)
        assert submitted == ["d0", "d1", "d2", "f0"]
        capacity[0] = 10
        # The next round starts at the next queue.
        assert claims.run()[0] == 2
        assert submitted[4:] == ["f1", "f2"]

    def test_an_idle_queue_is_asked_first_where_a_claim_is_a_transaction(
        self, frozen_clock, django_assert_num_queries
    ):
        """An idle worker's poll: one read that locks and writes nothing, then the claim."""
        QueueState.objects.create(name="default")
        submitted = []
        claims = ClaimRound(
            "default",
            "w1",
            [get_queue_config("default")],
            lease_seconds=60,
            rate_limits=True,
            poll_interval_seconds=1.0,
            capacity=lambda: 10,
            submit=lambda task, config: submitted.append(task.name),
            stopping=lambda: False,
        )
        one_statement = connection.vendor == "postgresql"
        assert claims.run()[0] == 0  # the first claim of a round: the claim itself
        with django_assert_num_queries(1):  # idle: one read (PostgreSQL: the claim statement)
            assert claims.run()[0] == 0
        tokens_at = QueueState.objects.get(name="default").tokens_at
        frozen_clock.advance(5)
        claims.run()
        # The read writes nothing: the bucket keeps the time it was last written.
        assert (QueueState.objects.get(name="default").tokens_at == tokens_at) != one_statement
        Queue("default").add(Task(url="/x", name="woken"))
        assert claims.run()[0] == 1
        assert submitted == ["woken"]
        # A queue that just gave a task is claimed from directly again.
        Queue("default").add(Task(url="/x", name="next"))
        with CaptureQueriesContext(connection) as queries:
            assert claims.run()[0] == 1
        assert not queries.captured_queries[0]["sql"].startswith("SELECT 1 AS")  # no read first

    def test_a_queue_read_decays_its_rate_to_the_time_it_is_read(self, frozen_clock):
        now = frozen_clock.now()
        state = QueueState(name="default", enforced_rate=4.0, tokens_at=now)
        assert state.rate_at(now) == 4.0
        later = state.rate_at(now + datetime.timedelta(seconds=60))
        assert 0 < later < 4.0
        assert later == pytest.approx(
            ratelimit.measured_rate(4.0, now, now + datetime.timedelta(seconds=60), 0)
        )
        assert QueueState(name="x", enforced_rate=2.5).rate_at(now) == 2.5  # no time: as stored


class TestSweepScheduler:
    def test_each_sweep_runs_once_per_interval(self, frozen_clock):
        frozen_clock.freeze_monotonic()
        runs = []

        class Counting(Sweep):
            name = "counting"

            def run(self, now: datetime.datetime) -> int:
                runs.append(now)
                return 0

        class Broken(Sweep):
            name = "broken"

            def run(self, now: datetime.datetime) -> int:
                raise ValueError("a sweep's own bug")

        scheduler = SweepScheduler([Broken("default", 5), Counting("default", 10)])
        scheduler.run_due()  # the broken sweep is logged, the next one still runs
        scheduler.run_due()
        assert len(runs) == 1
        frozen_clock.advance(10)
        scheduler.run_due()
        assert len(runs) == 2


class TestTally:
    def test_counts_by_status(self, caplog):
        tally = Tally("w1")
        for status in (AttemptStatus.SUCCEEDED, AttemptStatus.RETRY, AttemptStatus.DROPPED):
            tally.count(status)
        assert tally.ran == 3
        with caplog.at_level(logging.INFO, logger="django_taskqueue"):
            tally.log_summary(in_flight=0)
            tally.log_stopped()
        summary, stopped = (r.getMessage() for r in caplog.records)
        assert "ran=3 failed=0 retried=1" in summary and "total_ran=3" in summary
        assert "attempts=3 succeeded=1 retried=1 failed=0" in stopped


class TestListener:
    def test_enabled_where_the_store_can_notify(self):
        listener = Listener("default", Wakeup(), lambda: True)
        assert listener.enabled  # NOTIFY on PostgreSQL; the newest id elsewhere

    @staticmethod
    def woken(listener, timeout):
        """Wait like the worker's loop: in slices, until woken or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if listener.wait(0.2):
                listener.wakeup.clear()
                return True
        return False

    @pytest.mark.django_db(transaction=True)
    def test_a_committed_add_wakes_it(self):
        stopping = threading.Event()
        listener = Listener("default", Wakeup(), stopping.is_set)
        listener.start()
        try:
            assert self.woken(listener, 30)  # woken once on connecting, for adds made before
            with transaction.atomic():
                Queue("default").add(Task(url="/x"))
                assert not self.woken(listener, 0.3)  # real time: a wake is held until the commit
            assert self.woken(listener, 30)
        finally:
            stopping.set()
            listener.join(timeout=10)
            listener.wakeup.close()


class TestWakeup:
    def test_set_from_another_thread_ends_a_wait(self):
        wakeup = Wakeup()
        try:
            assert not wakeup.wait(0.01)
            timer = threading.Timer(0.05, wakeup.set)
            timer.start()
            assert wakeup.wait(30)
            timer.join()
            wakeup.set()  # a second set while set: still one byte in the pair
            wakeup.clear()
            assert not wakeup.is_set()
            assert not wakeup.wait(0.01)
        finally:
            wakeup.close()

    def test_a_set_before_the_pair_exists_is_not_lost(self):
        wakeup = Wakeup()
        wakeup.set()
        try:
            assert wait_readable([wakeup.fileno()], 0) == [wakeup.fileno()]
            wakeup.clear()
            assert wait_readable([wakeup.fileno()], 0) == []
        finally:
            wakeup.close()


# -- sweeps ---------------------------------------------------------------------------------


class TestSweeps:
    def test_rescuer_requeues_tasks_of_a_dead_worker(self, frozen_clock):
        Queue("default").add(Task(url="/echo", name="lost"))
        QueueState.objects.create(name="default")
        [claimed] = claim_now("default", frozen_clock).tasks
        rescuer = Rescuer("default", interval_seconds=1)
        assert rescuer.run(frozen_clock.now()) == 0  # lease still valid
        frozen_clock.advance(61)
        assert rescuer.run(frozen_clock.now()) == 1
        task = row("lost")
        assert task.state == TaskState.QUEUED
        assert task.retry_count == 1
        assert task.last_retry_reason == "worker lost"
        assert task.errors[0]["worker_id"] == "w1"
        assert task.eta == frozen_clock.now() + datetime.timedelta(seconds=0.1)
        assert rescuer.run(frozen_clock.now()) == 0
        # The dead worker's late outcome is dropped: the row is no longer its claim.
        from django_taskqueue.dispatch import outcome

        rows = outcome.running_row(claimed.id, "w1", claimed.leased_at, "default")
        assert not outcome.record_success(
            rows, now=frozen_clock.now(), status_code=200, return_value=None
        )
        assert row("lost").state == TaskState.QUEUED

    def test_pruner_deletes_past_retention_only(self, frozen_clock, settings):
        settings.TASKQUEUE = {
            **settings.TASKQUEUE,
            "TOMBSTONE_SECONDS": 100,
            "FINISHED_RETENTION_SECONDS": 50,
            "FAILED_RETENTION_SECONDS": 1000,
        }
        now = frozen_clock.now()
        Queue("default").add([Task(url="/echo", name=n) for n in ("s-old", "s-new", "f-mid")])
        TaskRecord.objects.filter(name="s-old").update(
            state=TaskState.SUCCEEDED, finished_at=now - datetime.timedelta(seconds=101)
        )
        TaskRecord.objects.filter(name="s-new").update(
            state=TaskState.DELETED, finished_at=now - datetime.timedelta(seconds=99)
        )
        TaskRecord.objects.filter(name="f-mid").update(
            state=TaskState.FAILED, finished_at=now - datetime.timedelta(seconds=500)
        )
        pruner = Pruner("default", interval_seconds=1, limit=1)
        assert pruner.run(now) == 1
        assert sorted(TaskRecord.objects.values_list("name", flat=True)) == ["f-mid", "s-new"]
        assert pruner.run(now + datetime.timedelta(seconds=600)) == 2
