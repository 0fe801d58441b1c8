"""The task store's verbs, each a conditional write, on every database."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection

from django_taskqueue.db import store
from django_taskqueue.db.features import BaseFeatures
from django_taskqueue.db.rows import Bucket, ClaimKey, Failure
from django_taskqueue.models import QueueState, TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

pytestmark = pytest.mark.django_db

LEASE = datetime.timedelta(seconds=60)


def row(name: str) -> TaskRecord:
    return TaskRecord.objects.get(name=name)


def claim_one(now: datetime.datetime, worker_id: str = "w1"):
    QueueState.objects.get_or_create(name="default")
    [task] = (
        store("default")
        .claim(
            "default",
            now=now,
            worker_id=worker_id,
            max_tasks=1,
            lease_until=now + LEASE,
            bucket=None,
        )
        .tasks
    )
    return task


def failure(will_retry: bool, eta: datetime.datetime | None = None) -> Failure:
    return Failure(
        will_retry=will_retry,
        failures=1,
        eta=eta,
        status_code=500,
        reason="HTTP 500",
        errors=[{"reason": "HTTP 500"}],
        last_error="HTTP 500",
    )


class TestFeatures:
    def test_each_vendor_says_what_it_can_do(self):
        features = store("default").features
        assert issubclass(features, BaseFeatures)
        assert features.can_claim_in_one_statement is (connection.vendor == "postgresql")
        assert features.can_notify_workers
        assert features.can_push_notifications is (connection.vendor == "postgresql")
        assert features.has_row_locks is (connection.vendor != "sqlite")

    def test_a_store_without_the_capability_refuses_the_verb(self, frozen_clock):
        tasks = store("default")
        if not tasks.features.can_notify_workers:
            with pytest.raises(NotImplementedError):
                tasks.listen(lambda: None, lambda: True)
        if not tasks.features.can_claim_in_one_statement:
            now = frozen_clock.now()
            with pytest.raises(NotImplementedError):
                tasks.claim_in_one_statement(
                    "default",
                    now=now,
                    worker_id="w1",
                    max_tasks=1,
                    lease_until=now + LEASE,
                    bucket=None,
                    columns=("id",),
                )

    def test_both_claims_agree(self, frozen_clock):
        # The transaction (a queue with a concurrency cap) and the vendor's claim take the same
        # tasks in the same order; on PostgreSQL the second is one statement.
        Queue("default").add([Task(url="/x", name=f"t{i}", countdown=-i) for i in range(4)])
        QueueState.objects.create(name="default")
        now = frozen_clock.now()
        capped = Bucket(rate=100.0, size=100, max_concurrent=2)
        first = store("default").claim(
            "default", now=now, worker_id="w1", max_tasks=2, lease_until=now + LEASE, bucket=capped
        )
        second = store("default").claim(
            "default", now=now, worker_id="w1", max_tasks=2, lease_until=now + LEASE, bucket=None
        )
        assert [t.name for t in first.tasks] == ["t3", "t2"]
        assert [t.name for t in second.tasks] == ["t1", "t0"]


class TestPushTransitions:
    def test_release_puts_the_task_back_as_it_was(self, frozen_clock):
        Queue("default").add(Task(url="/x", name="a"))
        eta = row("a").eta
        task = claim_one(frozen_clock.now())
        assert row("a").state == TaskState.RUNNING
        assert store("default").release(task.key, task.eta)
        released = row("a")
        assert (released.state, released.eta, released.worker_id) == (TaskState.QUEUED, eta, None)
        assert not store("default").release(task.key, task.eta)  # no longer held

    def test_succeed_writes_the_return_value_once(self, frozen_clock):
        Queue("default").add(Task(url="/x", name="a"))
        task = claim_one(frozen_clock.now())
        tasks = store("default")
        now = frozen_clock.now()
        assert tasks.succeed(task.key, now=now, status_code=200, return_value={"ok": 1})
        done = row("a")
        assert (done.state, done.return_value, done.execution_count) == (
            TaskState.SUCCEEDED,
            {"ok": 1},
            1,
        )
        assert not tasks.succeed(task.key, now=now, status_code=200, return_value=None)

    def test_retry_or_fail(self, frozen_clock):
        Queue("default").add([Task(url="/x", name="a"), Task(url="/x", name="b")])
        tasks = store("default")
        now = frozen_clock.now()
        first, second = claim_one(now), claim_one(now)
        later = now + datetime.timedelta(seconds=10)
        assert tasks.retry_or_fail(first.key, failure(True, later), now)
        assert tasks.retry_or_fail(second.key, failure(False), now)
        retried, failed = row(first.name), row(second.name)
        assert (retried.state, retried.eta, retried.retry_count) == (TaskState.QUEUED, later, 1)
        assert retried.last_error == "HTTP 500"
        assert (failed.state, failed.finished_at) == (TaskState.FAILED, now)

    def test_a_write_for_another_claim_changes_nothing(self, frozen_clock):
        Queue("default").add(Task(url="/x", name="a"))
        task = claim_one(frozen_clock.now())
        stale = ClaimKey(task.id, "someone-else", task.leased_at)
        assert not store("default").retry_or_fail(stale, failure(False), frozen_clock.now())
        assert row("a").state == TaskState.RUNNING

    def test_rescue_is_conditional_on_the_lease_read(self, frozen_clock):
        Queue("default").add(Task(url="/x", name="a"))
        claim_one(frozen_clock.now())
        tasks = store("default")
        later = frozen_clock.advance(LEASE.total_seconds() + 1)
        [expired] = tasks.expired_claims(later, limit=10)
        moved = {**expired, "eta": expired["eta"] - datetime.timedelta(seconds=1)}
        assert not tasks.rescue(moved, failure(True, later), later)
        assert tasks.rescue(expired, failure(True, later), later)
        assert row("a").state == TaskState.QUEUED
        assert tasks.expired_claims(later, limit=10) == []


class TestMaintenance:
    def test_prune_deletes_only_old_finished_rows_in_batches(self, frozen_clock):
        now = frozen_clock.now()
        Queue("default").add([Task(url="/x", name=f"t{i}") for i in range(5)])
        TaskRecord.objects.filter(name__in=["t0", "t1", "t2"]).update(
            state=TaskState.SUCCEEDED, finished_at=now - datetime.timedelta(hours=2)
        )
        cutoff = now - datetime.timedelta(hours=1)
        pruned = store("default").prune([TaskState.SUCCEEDED], cutoff, limit=2, max_batches=5)
        assert pruned == 3
        assert sorted(TaskRecord.objects.values_list("name", flat=True)) == ["t3", "t4"]

    def test_run_now_and_retry_failed(self, frozen_clock):
        now = frozen_clock.now()
        Queue("default").add(
            [Task(url="/x", name="later", countdown=3600), Task(url="/x", name="f")]
        )
        TaskRecord.objects.filter(name="f").update(
            state=TaskState.FAILED, finished_at=now, retry_count=3
        )
        tasks = store("default")
        selection = TaskRecord.objects.all()
        assert tasks.run_now(selection, now) == 1
        assert row("later").eta == now
        assert tasks.retry_failed(selection, now) == 1
        revived = row("f")
        assert (revived.state, revived.retry_count, revived.finished_at) == (
            TaskState.QUEUED,
            0,
            None,
        )
