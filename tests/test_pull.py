"""Pull queues: leases, tags, lease limits, lease changes, deletes, purge and statistics."""

import datetime

import pytest

from django_taskqueue import taskqueue
from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

from .conftest import FROZEN_AT

pytestmark = pytest.mark.django_db

SECOND = datetime.timedelta(seconds=1)


def pull(payload="p", **kwargs):
    return Task(payload, method="PULL", **kwargs)


@pytest.fixture
def queue():
    return Queue("pull-queue")


def add_spread(queue, frozen_clock, specs):
    """Add pull tasks one second apart (oldest first); specs are (name, tag) pairs."""
    start = frozen_clock.now()
    for i, (name, tag) in enumerate(specs):
        queue.add(pull(name, name=name, tag=tag, eta=start - (len(specs) - i) * SECOND))


class TestLease:
    def test_lease_sets_eta_and_counts(self, queue, frozen_clock):
        queue.add(pull(b"data", name="t1", tag="a"))
        [task] = queue.lease_tasks(30, 10)
        assert task.name == "t1"
        assert task.payload == b"data"
        assert task.tag == "a"
        assert task.method == "PULL"
        assert task.queue_name == "pull-queue"
        assert task.was_enqueued
        assert task.eta == FROZEN_AT + 30 * SECOND
        assert task.retry_count == 1
        assert queue.lease_tasks(30, 10) == []

    def test_oldest_eta_first_and_max_tasks(self, queue, frozen_clock):
        add_spread(queue, frozen_clock, [("t1", None), ("t2", None), ("t3", None)])
        assert [t.name for t in queue.lease_tasks(60, 2)] == ["t1", "t2"]
        assert [t.name for t in queue.lease_tasks(60, 2)] == ["t3"]

    def test_future_tasks_are_not_leased(self, queue, frozen_clock):
        queue.add(pull(countdown=10))
        assert queue.lease_tasks(60, 10) == []
        frozen_clock.advance(10)
        assert len(queue.lease_tasks(60, 10)) == 1

    def test_expired_lease_makes_the_task_leasable_again(self, queue, frozen_clock):
        queue.add(pull(name="again"))
        queue.lease_tasks(30, 1)
        frozen_clock.advance(29)
        assert queue.lease_tasks(30, 1) == []
        frozen_clock.advance(1)
        [task] = queue.lease_tasks(30, 1)
        assert task.retry_count == 2

    def test_zero_seconds_is_accepted(self, queue, frozen_clock):
        queue.add(pull())
        [task] = queue.lease_tasks(0, 1)
        assert task.eta == FROZEN_AT

    @pytest.mark.parametrize("seconds", [-1, taskqueue.MAX_LEASE_SECONDS + 1])
    def test_lease_seconds_range(self, queue, seconds):
        with pytest.raises(taskqueue.InvalidLeaseTimeError):
            queue.lease_tasks(seconds, 1)

    def test_lease_seconds_type(self, queue):
        with pytest.raises(TypeError):
            queue.lease_tasks("10", 1)

    def test_max_lease_seconds_accepted(self, queue):
        assert queue.lease_tasks(taskqueue.MAX_LEASE_SECONDS, 1) == []

    @pytest.mark.parametrize("count", [0, 1001])
    def test_max_tasks_range(self, queue, count):
        with pytest.raises(taskqueue.InvalidMaxTasksError):
            queue.lease_tasks(10, count)

    def test_max_tasks_type(self, queue):
        with pytest.raises(TypeError):
            queue.lease_tasks(10, 1.5)

    def test_push_queue(self):
        with pytest.raises(taskqueue.InvalidQueueModeError):
            Queue("default").lease_tasks(10, 1)
        with pytest.raises(taskqueue.InvalidQueueModeError):
            Queue("default").lease_tasks_by_tag(10, 1)

    def test_unknown_queue(self):
        with pytest.raises(taskqueue.UnknownQueueError):
            Queue("nope").lease_tasks(10, 1)

    def test_deadline(self, queue):
        with pytest.raises(taskqueue.InvalidDeadlineError):
            queue.lease_tasks(10, 1, deadline=0)

    def test_async(self, queue):
        queue.add(pull())
        assert len(queue.lease_tasks_async(10, 5).get_result()) == 1


class TestLeaseByTag:
    """The cases of App Engine's lease_tasks_by_tag."""

    def test_given_tag(self, queue, frozen_clock):
        add_spread(queue, frozen_clock, [("a1", "a"), ("b1", "b"), ("a2", "a"), ("n1", None)])
        assert [t.name for t in queue.lease_tasks_by_tag(60, 10, tag="a")] == ["a1", "a2"]
        assert [t.name for t in queue.lease_tasks_by_tag(60, 10, tag="b")] == ["b1"]
        assert queue.lease_tasks_by_tag(60, 10, tag="zzz") == []

    def test_none_takes_the_oldest_tasks_tag(self, queue, frozen_clock):
        add_spread(queue, frozen_clock, [("b1", "b"), ("a1", "a"), ("b2", "b"), ("n1", None)])
        assert [t.name for t in queue.lease_tasks_by_tag(60, 10)] == ["b1", "b2"]
        assert [t.name for t in queue.lease_tasks_by_tag(60, 10)] == ["a1"]
        assert [t.name for t in queue.lease_tasks_by_tag(60, 10)] == ["n1"]
        assert queue.lease_tasks_by_tag(60, 10) == []

    def test_none_with_untagged_oldest_leases_untagged_among_the_oldest(self, queue, frozen_clock):
        add_spread(queue, frozen_clock, [("n1", None), ("a1", "a"), ("n2", None), ("n3", None)])
        # Only the first max_tasks tasks by ETA are looked at: n1, a1, n2.
        assert [t.name for t in queue.lease_tasks_by_tag(60, 3)] == ["n1", "n2"]
        assert [t.name for t in queue.lease_tasks_by_tag(60, 3)] == ["a1"]
        assert [t.name for t in queue.lease_tasks_by_tag(60, 3)] == ["n3"]

    def test_empty_queue(self, queue):
        assert queue.lease_tasks_by_tag(60, 10) == []

    def test_future_tasks_do_not_decide_the_tag(self, queue, frozen_clock):
        queue.add(pull(name="later", tag="later", countdown=5))
        queue.add(pull(name="now", tag="now"))
        assert [t.name for t in queue.lease_tasks_by_tag(60, 10)] == ["now"]


class TestLeaseLimit:
    def test_task_retry_limit_is_the_number_of_leases(self, frozen_clock):
        queue = Queue("pull-limited")  # task_retry_limit: 2
        queue.add(pull(name="limited"))
        for expected in (1, 2):
            [task] = queue.lease_tasks(10, 1)
            assert task.retry_count == expected
            frozen_clock.advance(10)
        assert queue.lease_tasks(10, 1) == []
        row = TaskRecord.objects.get(name="limited")
        assert row.state == TaskState.FAILED
        assert row.retry_count == 2
        # Kept as failed: the name stays taken.
        with pytest.raises(taskqueue.TombstonedTaskError):
            queue.add(pull(name="limited"))

    def test_a_pull_tasks_own_options_are_not_sent(self, frozen_clock):
        # App Engine's client sends retry options for push tasks only: a pull task follows
        # its queue's task_retry_limit (2 leases) whatever it was given.
        queue = Queue("pull-limited")
        options = taskqueue.TaskRetryOptions(task_retry_limit=0)
        queue.add(pull(name="given-0", retry_options=options))
        queue.add(
            pull(name="given-9", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=9))
        )
        for _ in range(2):
            assert sorted(t.name for t in queue.lease_tasks(0, 10)) == ["given-0", "given-9"]
        assert queue.lease_tasks(0, 10) == []
        rows = TaskRecord.objects.filter(name__startswith="given-")
        assert {(r.state, r.retry_options) for r in rows} == {(TaskState.FAILED, None)}


class TestModifyLease:
    def test_extend(self, queue, frozen_clock):
        queue.add(pull(name="m"))
        [task] = queue.lease_tasks(30, 1)
        frozen_clock.advance(20)
        queue.modify_task_lease(task, 60)
        assert task.eta == frozen_clock.now() + 60 * SECOND
        assert task.retry_count == 1
        frozen_clock.advance(59)
        assert queue.lease_tasks(30, 1) == []
        queue.modify_task_lease(task, 5)

    def test_zero_releases(self, queue, frozen_clock):
        queue.add(pull(name="m"))
        [task] = queue.lease_tasks(30, 1)
        queue.modify_task_lease(task, 0)
        [again] = queue.lease_tasks(30, 1)
        assert again.retry_count == 2
        assert TaskRecord.objects.get(name="m").retry_count == 2

    def test_expired_lease(self, queue, frozen_clock):
        queue.add(pull(name="m"))
        [task] = queue.lease_tasks(30, 1)
        frozen_clock.advance(31)
        with pytest.raises(taskqueue.TaskLeaseExpiredError):
            queue.modify_task_lease(task, 30)

    def test_lease_taken_by_another_worker(self, queue, frozen_clock):
        queue.add(pull(name="m"))
        [first] = queue.lease_tasks(30, 1)
        frozen_clock.advance(31)
        [second] = queue.lease_tasks(30, 1)
        with pytest.raises(taskqueue.TaskLeaseExpiredError):
            queue.modify_task_lease(first, 30)
        queue.modify_task_lease(second, 30)

    def test_race_between_two_holders_of_the_same_lease(self, queue, frozen_clock):
        queue.add(pull(name="m"))
        [task] = queue.lease_tasks(30, 1)
        copy = Task._restore("pull-queue", {"name": "m", "eta": task.eta, "payload": b"p"})
        queue.modify_task_lease(task, 40)
        with pytest.raises(taskqueue.TaskLeaseExpiredError):
            queue.modify_task_lease(copy, 40)

    def test_deleted_task(self, queue):
        queue.add(pull(name="m"))
        [task] = queue.lease_tasks(30, 1)
        queue.delete_tasks(task)
        with pytest.raises(taskqueue.TombstonedTaskError):
            queue.modify_task_lease(task, 30)

    def test_unknown_task(self, queue):
        with pytest.raises(taskqueue.Error) as info:
            queue.modify_task_lease(Task._restore("pull-queue", {"name": "x", "eta": FROZEN_AT}), 1)
        assert type(info.value) is taskqueue.UnknownTaskError

    def test_paused_queue(self, queue):
        queue.add(pull(name="m"))
        [task] = queue.lease_tasks(30, 1)
        queue.pause()
        with pytest.raises(taskqueue.QueuePausedError):
            queue.modify_task_lease(task, 30)

    def test_lease_seconds_range(self, queue):
        with pytest.raises(taskqueue.InvalidLeaseTimeError):
            queue.modify_task_lease(pull(name="x"), -1)

    def test_push_queue(self):
        with pytest.raises(taskqueue.InvalidQueueModeError):
            Queue("default").modify_task_lease(Task(name="x"), 10)


class TestPause:
    def test_paused_queue_leases_nothing_but_accepts_adds(self, queue):
        queue.pause()
        assert queue.is_paused()
        queue.add(pull())
        assert queue.lease_tasks(10, 10) == []
        assert queue.lease_tasks_by_tag(10, 10) == []
        queue.resume()
        assert len(queue.lease_tasks(10, 10)) == 1

    def test_rate_zero_is_paused(self):
        assert Queue("paused").is_paused()
        Queue("paused").resume()
        assert Queue("paused").is_paused()


class TestDelete:
    def test_delete_tasks(self, queue):
        queue.add([pull(name="d1"), pull(name="d2")])
        tasks = queue.lease_tasks(60, 10)
        assert queue.delete_tasks(tasks) is tasks
        assert all(t.was_deleted for t in tasks)
        assert TaskRecord.objects.filter(state=TaskState.DELETED).count() == 2

    def test_unknown_and_tombstoned_names_are_not_errors(self, queue):
        queue.add(pull(name="d1"))
        queue.delete_tasks_by_name("d1")
        result = queue.delete_tasks_by_name(["d1", "never-existed"])
        assert [t.was_deleted for t in result] == [False, False]

    def test_single_name(self, queue):
        queue.add(pull(name="d1"))
        task = queue.delete_tasks_by_name("d1")
        assert isinstance(task, Task) and task.was_deleted

    def test_unnamed_task(self, queue):
        with pytest.raises(taskqueue.BadTaskStateError):
            queue.delete_tasks(pull())

    def test_already_deleted(self, queue):
        queue.add(pull(name="d1"))
        task = queue.delete_tasks_by_name("d1")
        with pytest.raises(taskqueue.BadTaskStateError):
            queue.delete_tasks(task)

    def test_duplicate_names(self, queue):
        with pytest.raises(taskqueue.DuplicateTaskNameError):
            queue.delete_tasks_by_name(["a", "a"])

    def test_push_tasks_can_be_deleted(self):
        task = taskqueue.add(url="/x")
        assert Queue().delete_tasks(task).was_deleted

    def test_leased_tasks_deleted_by_another_caller(self, queue):
        queue.add([pull(name="d1"), pull(name="d2")])
        tasks = queue.lease_tasks(60, 10)
        queue.delete_tasks_by_name("d1")
        queue.delete_tasks(tasks)
        assert [t.was_deleted for t in tasks] == [False, True]
        assert set(TaskRecord.objects.values_list("state", flat=True)) == {TaskState.DELETED}

    def test_leased_task_whose_name_was_used_again(self, queue):
        # Its row pruned and the name added again: deleting it deletes the task of that name,
        # as deleting by name does, though its row id is not that task's.
        queue.add(pull(name="d1"))
        [task] = queue.lease_tasks(60, 10)
        TaskRecord.objects.filter(name="d1").delete()
        queue.add(pull(name="d1"))
        assert queue.delete_tasks(task).was_deleted
        assert TaskRecord.objects.get(name="d1").state == TaskState.DELETED

    def test_leased_task_deleted_through_another_queue(self, queue):
        queue.add(pull(name="same"))
        Queue("pull-limited").add(pull(name="same"))
        [task] = queue.lease_tasks(60, 10)
        assert Queue("pull-limited").delete_tasks(task).was_deleted
        states = dict(TaskRecord.objects.values_list("queue_name", "state"))
        assert states == {"pull-queue": TaskState.QUEUED, "pull-limited": TaskState.DELETED}

    def test_other_queue_is_untouched(self, queue):
        taskqueue.add(url="/x", name="same")
        queue.add(pull(name="same"))
        queue.delete_tasks_by_name("same")
        assert TaskRecord.objects.get(queue_name="default").state == TaskState.QUEUED


def test_purge(queue):
    queue.add([pull(name=f"p{i}") for i in range(5)])
    taskqueue.add(url="/x")
    queue.purge()
    assert queue.lease_tasks(10, 10) == []
    assert TaskRecord.objects.filter(state=TaskState.QUEUED).count() == 1


class TestStatistics:
    def test_figures(self, queue, frozen_clock):
        start = frozen_clock.now()
        queue.add(pull(name="old", eta=start - 5 * SECOND))
        queue.add(pull(name="new"))
        queue.add(pull(name="future", countdown=100))
        stats = queue.fetch_statistics()
        assert stats.queue == queue
        assert stats.tasks == 3
        assert stats.oldest_eta_usec == int((start - 5 * SECOND).timestamp() * 1_000_000)
        assert stats.executed_last_minute == 0
        assert stats.in_flight is None
        assert stats.enforced_rate is None
        queue.lease_tasks(30, 2)
        frozen_clock.advance(30)
        stats = queue.fetch_statistics()
        assert stats.executed_last_minute == 2
        assert stats.executed_last_hour == 2
        assert stats.leased == 0
        frozen_clock.advance(31)
        assert queue.fetch_statistics().executed_last_minute == 0
        assert queue.fetch_statistics().executed_last_hour == 2

    def test_empty_push_queue(self):
        stats = Queue("fast").fetch_statistics()
        assert (stats.tasks, stats.oldest_eta_usec, stats.in_flight) == (0, None, 0)

    def test_fetch_many(self):
        taskqueue.add(url="/x")
        result = taskqueue.QueueStatistics.fetch(["default", "fast"])
        assert [s.tasks for s in result] == [1, 0]
        assert taskqueue.QueueStatistics.fetch([]) == []
        with pytest.raises(TypeError):
            taskqueue.QueueStatistics.fetch([Queue("default"), "fast"])


def test_pull_counter_sample(frozen_clock):
    """App Engine's pull-counter sample: a counter per key, summed by leasing by tag."""
    queue = Queue("pull-queue")
    for key, times in (("apples", 3), ("pears", 2)):
        for _ in range(times):
            queue.add(pull("1", tag=key))
    counters: dict[str, int] = {}
    while True:
        tasks = queue.lease_tasks_by_tag(3600, 1000)
        if not tasks:
            break
        key = tasks[0].tag
        counters[key] = counters.get(key, 0) + sum(int(t.payload) for t in tasks)
        queue.delete_tasks(tasks)
    assert counters == {"apples": 3, "pears": 2}
    assert queue.fetch_statistics().tasks == 0
