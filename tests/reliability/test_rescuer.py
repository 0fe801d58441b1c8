"""The rescuer and the heartbeat rows, in-process: who is dead, what is charged, when a task ends."""

from __future__ import annotations

import pytest

from django_taskqueue.db import store
from django_taskqueue.dispatch.sweeps import Rescuer
from django_taskqueue.models import QueueState, TaskRecord, TaskState, WorkerHeartbeat
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import claim_now

pytestmark = pytest.mark.django_db


def claimed_by(worker_id, frozen_clock, *names):
    Queue("default").add([Task(url="/x", name=n) for n in names])
    QueueState.objects.get_or_create(name="default")
    return {t.name: t for t in claim_now("default", frozen_clock, 10, worker_id).tasks}


def test_a_silent_worker_is_dead_only_its_started_tasks_are_charged(frozen_clock, settings):
    settings.TASKQUEUE = {**settings.TASKQUEUE, "WORKER_TIMEOUT_SECONDS": 20}
    tasks = claimed_by("dead", frozen_clock, "ran", "waited")
    store("default").beat("dead", frozen_clock.now(), [tasks["ran"].id])
    frozen_clock.advance(19)
    store("default").beat("alive", frozen_clock.now(), [])
    assert Rescuer("default", 1, worker_id="me").run(frozen_clock.now()) == 0  # not yet
    frozen_clock.advance(2)
    assert Rescuer("default", 1, worker_id="me").run(frozen_clock.now()) == 2
    ran, waited = TaskRecord.objects.get(name="ran"), TaskRecord.objects.get(name="waited")
    assert (ran.state, ran.retry_count, ran.lost_count) == (TaskState.QUEUED, 1, 1)
    assert ran.errors[-1]["reason"] == "worker lost"
    assert ran.last_retry_reason == "worker lost"
    assert (waited.state, waited.retry_count, waited.execution_count) == (TaskState.QUEUED, 0, 0)
    assert (waited.lost_count, waited.errors, waited.last_retry_reason) == (1, [], None)
    assert waited.eta == frozen_clock.now()  # due at once
    assert list(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == ["alive"]


def test_a_worker_never_takes_itself_for_dead(frozen_clock):
    claimed_by("me", frozen_clock, "mine")
    store("default").beat("me", frozen_clock.now(), [])
    frozen_clock.advance(3600)
    assert Rescuer("default", 1, worker_id="me").rescue_dead_workers(frozen_clock.now()) == 0
    assert TaskRecord.objects.get(name="mine").state == TaskState.RUNNING


def test_a_task_held_by_too_many_dead_workers_fails(frozen_clock, settings):
    settings.TASKQUEUE = {**settings.TASKQUEUE, "MAX_WORKER_LOSSES": 2}
    claimed_by("dead0", frozen_clock, "poison")
    for n in range(2):
        if n:
            claim_now("default", frozen_clock, 10, f"dead{n}")
        store("default").beat(f"dead{n}", frozen_clock.now(), [])
        frozen_clock.advance(60)
        assert Rescuer("default", 1).run(frozen_clock.now()) == 1
    task = TaskRecord.objects.get(name="poison")
    assert (task.state, task.lost_count, task.retry_count) == (TaskState.FAILED, 2, 0)
    assert task.last_error == "worker lost 2 times"


def test_a_worker_back_from_an_outage_writes_its_row_again(frozen_clock):
    tasks = store("default")
    tasks.beat("w", frozen_clock.now(), [])
    tasks.forget_worker("w")  # a rescuer took it for dead
    tasks.beat("w", frozen_clock.now(), [7])
    assert WorkerHeartbeat.objects.get(worker_id="w").started == [7]
    # A rescuer that read an older beat leaves the fresh row alone.
    tasks.forget_worker("w", beat_at=frozen_clock.now().replace(year=2000))
    assert WorkerHeartbeat.objects.filter(worker_id="w").exists()


def test_release_unstarted_gives_back_only_the_workers_running_tasks(frozen_clock):
    tasks = claimed_by("w", frozen_clock, "a", "b")
    released = store("default").release_unstarted(
        "w", [tasks["a"].id, tasks["b"].id, 10**9], frozen_clock.now()
    )
    assert released == 2
    assert set(TaskRecord.objects.values_list("state", "retry_count", "worker_id")) == {
        (TaskState.QUEUED, 0, None)
    }
    assert store("default").release_unstarted("other", [tasks["a"].id], frozen_clock.now()) == 0
