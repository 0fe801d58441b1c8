"""django_taskqueue.inspect: reading live tasks without leasing them."""

import datetime

import pytest

from django_taskqueue import inspect
from django_taskqueue.taskqueue import (
    InvalidTaskNameError,
    Queue,
    Task,
    UnknownQueueError,
    UnknownTaskError,
)

from .conftest import FROZEN_AT

pytestmark = pytest.mark.django_db

SECOND = datetime.timedelta(seconds=1)


def add(name, tag=None, eta=None, queue="pull-queue", payload=b"p"):
    return Queue(queue).add(Task(payload, method="PULL", name=name, tag=tag, eta=eta))


def test_get_task_returns_payload_and_times(frozen_clock):
    add("t1", tag="a", payload=b"\x00data")
    info = inspect.get_task("pull-queue", "t1")
    assert info.name == "t1"
    assert info.queue_name == "pull-queue"
    assert info.payload == b"\x00data"
    assert info.tag == "a"
    assert info.eta == FROZEN_AT
    assert info.enqueued_at == FROZEN_AT
    assert info.retry_count == 0
    assert info.leased_at is None
    assert info.method == "PULL"


def test_get_task_sees_a_lease(frozen_clock):
    add("t1")
    Queue("pull-queue").lease_tasks(30, 1)
    info = inspect.get_task("pull-queue", "t1")
    assert info.eta == FROZEN_AT + 30 * SECOND
    assert info.retry_count == 1
    assert info.leased_at == FROZEN_AT


def test_get_task_unknown_and_deleted(frozen_clock):
    with pytest.raises(UnknownTaskError):
        inspect.get_task("pull-queue", "missing")
    add("gone")
    Queue("pull-queue").delete_tasks_by_name("gone")
    with pytest.raises(UnknownTaskError):
        inspect.get_task("pull-queue", "gone")
    with pytest.raises(UnknownQueueError):
        inspect.get_task("no-such-queue", "gone")
    with pytest.raises(InvalidTaskNameError):
        inspect.get_task("pull-queue", "nul\x00")


def test_list_tasks_pages_by_eta_then_name(frozen_clock):
    for i, name in enumerate(["c", "a", "b", "d", "e"]):
        add(name, eta=FROZEN_AT - (10 - (i // 2)) * SECOND)
    # ETAs: c, a at -10 s; b, d at -9 s; e at -8 s.
    first = inspect.list_tasks("pull-queue", limit=3)
    assert [t.name for t in first] == ["a", "c", "b"]
    assert all(t.payload is None for t in first)
    second = inspect.list_tasks("pull-queue", after=first[-1].position, limit=3)
    assert [t.name for t in second] == ["d", "e"]


def test_list_tasks_by_tag_and_untagged(frozen_clock):
    add("x", tag="red")
    add("y", tag="blue")
    add("z")
    assert [t.name for t in inspect.list_tasks("pull-queue", tag="red")] == ["x"]
    assert [t.name for t in inspect.list_tasks("pull-queue", tag=None)] == ["z"]
    assert len(inspect.list_tasks("pull-queue")) == 3


def test_list_tasks_leaves_out_other_queues_and_tombstones(frozen_clock):
    add("mine")
    add("theirs", queue="pull-limited")
    add("deleted")
    Queue("pull-queue").delete_tasks_by_name("deleted")
    assert [t.name for t in inspect.list_tasks("pull-queue")] == ["mine"]


def test_list_tasks_limit(frozen_clock):
    with pytest.raises(ValueError):
        inspect.list_tasks("pull-queue", limit=0)


def test_enqueued_times(frozen_clock):
    add("t1")
    frozen_clock.advance(5)
    add("t2")
    assert inspect.enqueued_times("pull-queue", ["t1", "t2", "nope"]) == {
        "t1": FROZEN_AT,
        "t2": FROZEN_AT + 5 * SECOND,
    }
    assert inspect.enqueued_times("pull-queue", []) == {}
