"""Adding tasks: names, tombstones, batches, modes and transactions, on every database."""

import datetime

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from django_taskqueue import taskqueue
from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import get_filtered_tasks

from .conftest import FROZEN_AT

pytestmark = pytest.mark.django_db


def test_add_returns_the_task_with_a_random_name(frozen_clock):
    task = taskqueue.add(url="/work", params={"a": "1"})
    assert task.was_enqueued
    assert task.queue_name == "default"
    assert len(task.name) == 32
    other = taskqueue.add(url="/work")
    assert other.name != task.name
    row = TaskRecord.objects.get(name=task.name)
    assert row.state == TaskState.QUEUED
    assert row.url == "/work"
    assert bytes(row.payload) == b"a=1"
    assert row.eta == FROZEN_AT
    assert row.enqueued_at == FROZEN_AT


def test_module_add_takes_queue_name_and_task_arguments():
    task = taskqueue.add(queue_name="fast", url="/x", name="explicit", countdown=5)
    assert (task.queue_name, task.name) == ("fast", "explicit")


def test_default_url_is_the_queue_path():
    Queue("fast").add(Task(method="GET", params={"a": "b"}))
    [task] = get_filtered_tasks(queue_names="fast")
    assert task.url == "/_ah/queue/fast?a=b"
    assert [t.name for t in get_filtered_tasks(url="/_ah/queue/fast?a=b")] == [task.name]


def test_headers_and_retry_options_are_stored():
    options = taskqueue.TaskRetryOptions(task_retry_limit=3, min_backoff_seconds=2)
    taskqueue.add(url="/x", name="h", headers={"X-Custom": ["a", "b"]}, retry_options=options)
    [task] = get_filtered_tasks(name="h")
    assert task.headers == {"X-Custom": ["a", "b"], "X-AppEngine-Current-Namespace": ""}
    assert task.headers["x-custom"] == ["a", "b"]
    assert task.retry_options == options


def test_unknown_queue():
    with pytest.raises(taskqueue.UnknownQueueError):
        Queue("no-such-queue").add(Task())
    with pytest.raises(taskqueue.UnknownQueueError):
        Queue("no-such-queue").purge()
    # App Engine answers statistics of an unknown queue with an empty queue's figures.
    stats = Queue("no-such-queue").fetch_statistics()
    assert stats == taskqueue.QueueStatistics(Queue("no-such-queue"), tasks=0)
    assert stats.oldest_eta_usec is None


def test_push_task_into_pull_queue_and_back():
    with pytest.raises(taskqueue.InvalidQueueModeError):
        Queue("pull-queue").add(Task(b"x"))
    with pytest.raises(taskqueue.InvalidQueueModeError):
        Queue("default").add(Task(b"x", method="PULL"))


def test_pull_task_needs_a_payload():
    # As App Engine's client: refused when the task is built, before any add.
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(method="PULL")
    assert Task(b"", method="PULL").payload == b""


def test_target_outside_targets_runs_in_process(caplog):
    # App Engine targets name versions or services of one app; here any target that is not
    # a key of TARGETS is served by this project, in-process.
    task = taskqueue.add(url="/x", target="nowhere")
    assert task.was_enqueued
    assert task.target == "nowhere"
    assert TaskRecord.objects.get(name=task.name).target == "nowhere"
    assert "target_in_process target=nowhere" in caplog.text


class TestNames:
    def test_live_name_exists(self):
        taskqueue.add(url="/x", name="once")
        with pytest.raises(taskqueue.TaskAlreadyExistsError):
            taskqueue.add(url="/x", name="once")

    def test_same_name_in_another_queue(self):
        taskqueue.add(url="/x", name="shared")
        assert taskqueue.add(url="/x", name="shared", queue_name="fast").was_enqueued

    def test_deleted_name_is_tombstoned_until_it_expires(self, frozen_clock, settings):
        queue = Queue("default")
        queue.add(Task(url="/x", name="ghost"))
        queue.delete_tasks_by_name("ghost")
        with pytest.raises(taskqueue.TombstonedTaskError):
            queue.add(Task(url="/x", name="ghost"))
        frozen_clock.advance(9 * 86400 - 1)
        with pytest.raises(taskqueue.TombstonedTaskError):
            queue.add(Task(url="/x", name="ghost"))
        frozen_clock.advance(2)
        assert queue.add(Task(url="/x", name="ghost")).was_enqueued
        assert TaskRecord.objects.filter(name="ghost").count() == 1

    def test_tombstone_seconds_setting(self, frozen_clock, settings):
        settings.TASKQUEUE = {**settings.TASKQUEUE, "TOMBSTONE_SECONDS": 60}
        taskqueue.add(url="/x", name="short")
        Queue().delete_tasks_by_name("short")
        frozen_clock.advance(61)
        assert taskqueue.add(url="/x", name="short").was_enqueued

    def test_purge_tombstones(self):
        taskqueue.add(url="/x", name="purged")
        Queue().purge()
        with pytest.raises(taskqueue.TombstonedTaskError):
            taskqueue.add(url="/x", name="purged")

    def test_finished_and_failed_names_are_tombstoned(self, frozen_clock):
        for state in (TaskState.SUCCEEDED, TaskState.FAILED):
            task = taskqueue.add(url="/x", name=f"n-{state}")
            TaskRecord.objects.filter(name=task.name).update(state=state, finished_at=FROZEN_AT)
            with pytest.raises(taskqueue.TombstonedTaskError):
                taskqueue.add(url="/x", name=f"n-{state}")


class TestBatch:
    def test_up_to_100(self):
        tasks = Queue().add([Task(url=f"/t{i}") for i in range(100)])
        assert all(t.was_enqueued for t in tasks)
        assert TaskRecord.objects.count() == 100

    def test_too_many(self):
        with pytest.raises(taskqueue.TooManyTasksError):
            Queue().add([Task() for _ in range(101)])
        assert TaskRecord.objects.count() == 0

    def test_duplicate_names_in_one_batch(self):
        with pytest.raises(taskqueue.DuplicateTaskNameError):
            Queue().add([Task(name="dup"), Task(name="dup")])
        assert TaskRecord.objects.count() == 0

    def test_already_added_task(self):
        task = taskqueue.add(url="/x")
        with pytest.raises(taskqueue.BadTaskStateError):
            Queue().add(task)

    def test_mixed_push_and_pull(self):
        with pytest.raises(taskqueue.InvalidTaskError):
            Queue("pull-queue").add([Task(b"a", method="PULL"), Task(b"b")])

    def test_empty(self):
        assert Queue().add([]) == []

    def test_values_of_a_batch_are_stored_as_given(self):
        # A batch goes as one array per column (on PostgreSQL in the binary format): quotes,
        # backslashes, braces, commas, NULLs in an array and bytes of every value come back.
        awkward = 'a "quoted", {braced} \\ back\\slash, NULL, \u00e9\u4e2d'
        options = taskqueue.TaskRetryOptions(task_retry_limit=2)
        batch = [
            Task(b"\x00\xff{,}\\", name="t-1", headers={"X-Odd": awkward}),
            Task(b"", name="t-2", countdown=30, retry_options=options),
            Task(method="GET", name="t-3", url="/p?q=" + "%22" * 3, headers={"X-Empty": ""}),
        ]
        Queue().add(batch)
        [one], [two], [three] = (get_filtered_tasks(name=f"t-{i}") for i in (1, 2, 3))
        assert one.payload == b"\x00\xff{,}\\"
        assert one.headers["X-Odd"] == awkward
        assert two.payload == b""
        assert two.retry_options == options
        assert two.eta == batch[1].eta
        assert three.url == "/p?q=" + "%22" * 3
        assert three.headers["X-Empty"] == ""

    def test_partial_success(self):
        taskqueue.add(url="/x", name="taken")
        Queue().delete_tasks_by_name(taskqueue.add(url="/x", name="gone").name)
        batch = [Task(name="new-1"), Task(name="taken"), Task(), Task(name="gone")]
        with pytest.raises(taskqueue.TombstonedTaskError):
            Queue().add(batch)
        # Every other task went in, as App Engine's batch add promises.
        assert [t.was_enqueued for t in batch] == [True, False, True, False]
        assert TaskRecord.objects.filter(state=TaskState.QUEUED).count() == 3

    def test_last_name_conflict_is_raised(self):
        # App Engine's rule: a later error replaces a name conflict.
        Queue().delete_tasks_by_name(taskqueue.add(url="/x", name="gone").name)
        taskqueue.add(url="/x", name="taken")
        with pytest.raises(taskqueue.TaskAlreadyExistsError):
            Queue().add([Task(name="gone"), Task(name="taken")])
        with pytest.raises(taskqueue.TombstonedTaskError):
            Queue().add([Task(name="taken"), Task(name="gone")])

    def test_unnamed_tasks_of_a_batch_that_raised_have_their_names(self):
        taskqueue.add(url="/x", name="taken")
        batch = [Task(name=""), Task(name="taken"), Task()]
        with pytest.raises(taskqueue.TaskAlreadyExistsError):
            Queue().add(batch)
        assert batch[0].was_enqueued and batch[2].was_enqueued
        names = {batch[0].name, batch[2].name}
        assert None not in names
        assert set(TaskRecord.objects.values_list("name", flat=True)) == names | {"taken"}


class TestTransactions:
    def test_rollback_removes_the_task(self):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                taskqueue.add(url="/x", name="rolled-back", transactional=True)
                assert TaskRecord.objects.filter(name="rolled-back").exists()
                raise RuntimeError
        assert not TaskRecord.objects.filter(name="rolled-back").exists()
        # The name was never used: no tombstone.
        assert taskqueue.add(url="/x", name="rolled-back").was_enqueued

    def test_plain_add_inside_atomic_is_part_of_it(self):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                taskqueue.add(url="/x")
                raise RuntimeError
        assert TaskRecord.objects.count() == 0

    @pytest.mark.django_db(transaction=True)
    def test_transactional_outside_a_transaction(self):
        with pytest.raises(taskqueue.BadTransactionStateError):
            taskqueue.add(url="/x", transactional=True)

    def test_conflict_inside_a_transaction_keeps_it_usable(self):
        taskqueue.add(url="/x", name="taken")
        with transaction.atomic():
            with pytest.raises(taskqueue.TaskAlreadyExistsError):
                taskqueue.add(url="/x", name="taken")
            taskqueue.add(url="/x", name="after")
        assert TaskRecord.objects.filter(name="after").exists()


class TestAsync:
    def test_add_async(self):
        rpc = Queue().add_async(Task(url="/x", name="a1"))
        assert rpc.get_result().was_enqueued

    def test_add_async_error_on_get_result(self):
        taskqueue.add(url="/x", name="a2")
        rpc = Queue().add_async(Task(url="/x", name="a2"))
        with pytest.raises(taskqueue.TaskAlreadyExistsError):
            rpc.get_result()

    def test_callback(self):
        calls = []
        rpc = taskqueue.create_rpc(callback=lambda: calls.append(1))
        Task(url="/x").add_async(rpc=rpc)
        assert calls == [1]
        assert rpc.get_result().was_enqueued


@pytest.mark.django_db(transaction=True)
def test_coroutine_twins():
    async def scenario():
        task = await taskqueue.aadd(url="/x", name="async-add")
        assert task.was_enqueued
        stats = await Queue().afetch_statistics()
        assert stats.tasks == 1
        [deleted] = await Queue().adelete_tasks_by_name(["async-add"])
        assert deleted.was_deleted

    async_to_sync(scenario)()


def test_eta_is_checked_again_at_add(frozen_clock):
    task = Task(countdown=30 * 86400)
    frozen_clock.set(FROZEN_AT - datetime.timedelta(seconds=10))
    with pytest.raises(taskqueue.InvalidEtaError):
        Queue().add(task)


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
class TestTransactionOnAnotherDatabase:
    """The caller's transaction is on `other`; the queue lives on `default`."""

    def test_the_task_is_written_when_that_transaction_commits(self):
        with transaction.atomic(using="other"):
            task = taskqueue.add(url="/x", transactional=True)
            assert task.was_enqueued
            assert not TaskRecord.objects.filter(name=task.name).exists()
        assert TaskRecord.objects.filter(name=task.name).exists()

    def test_rollback_means_it_is_never_written(self):
        with pytest.raises(RuntimeError):
            with transaction.atomic(using="other"):
                taskqueue.add(url="/x", transactional=True)
                raise RuntimeError
        assert not TaskRecord.objects.exists()

    def test_named_tasks_cannot_ride_on_another_database(self):
        with transaction.atomic(using="other"):
            with pytest.raises(taskqueue.InvalidTaskNameError):
                taskqueue.add(url="/x", name="n", transactional=True)

    def test_non_transactional_add_is_immediate(self):
        with pytest.raises(RuntimeError):
            with transaction.atomic(using="other"):
                taskqueue.add(url="/x", name="now")
                raise RuntimeError
        assert TaskRecord.objects.filter(name="now").exists()
