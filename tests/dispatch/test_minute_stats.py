"""Per-minute statistics: counted by the workers in memory, added to the table in one upsert."""

import datetime

import pytest

from django_taskqueue import taskqueue
from django_taskqueue.dispatch.minute_stats import (
    HOUR,
    MINUTE,
    SAMPLE_MARKER,
    TOTALS,
    MinuteStats,
    MinuteStatsPruner,
    hour_of,
    minute_of,
)
from django_taskqueue.models import QueueMinuteStats
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import run_tasks

pytestmark = pytest.mark.django_db


def row(queue, starts_at, span=MINUTE):
    return QueueMinuteStats.objects.get(queue_name=queue, span=span, starts_at=starts_at)


def totals(queue):
    return QueueMinuteStats.objects.get(queue_name=queue, span=TOTALS)


def test_flush_is_one_statement_for_every_queue_and_adds_up(
    frozen_clock, django_assert_num_queries
):
    now = frozen_clock.now()
    stats = MinuteStats("default")
    stats.record("default", "succeeded", 0.5)
    stats.record("default", "failed", 1.5)
    stats.record("fast", "retry", 0.25)
    with django_assert_num_queries(1):
        assert stats.flush() == 6  # for each queue: its minute, its hour, its totals
    stats.record("default", "succeeded", 2.0)
    other = MinuteStats("default")  # another worker adds to the same row
    other.record("default", "retry", 0.1)
    stats.flush()
    other.flush()
    default = row("default", minute_of(now))
    assert (default.executed, default.failed, default.retried) == (4, 1, 1)
    assert default.run_seconds == pytest.approx(4.1)
    assert default.max_run_seconds == pytest.approx(2.0)
    assert default.waiting is None
    assert row("fast", minute_of(now)).retried == 1
    assert totals("default").executed == 4
    with django_assert_num_queries(0):
        assert stats.flush() == 0


def test_counts_go_to_the_minute_they_happened_in(frozen_clock):
    stats = MinuteStats("default")
    stats.record("default", "succeeded", 0.1)
    first = minute_of(frozen_clock.now())
    frozen_clock.advance(60)
    stats.record("default", "succeeded", 0.1)
    stats.record("default", "succeeded", 0.1)
    stats.flush()
    assert row("default", first).executed == 1
    assert row("default", first + datetime.timedelta(minutes=1)).executed == 2
    assert totals("default").executed == 3


def test_tick_flushes_once_the_minute_has_ended(frozen_clock):
    stats = MinuteStats("default", flush_interval_seconds=3600)
    stats.record("default", "succeeded", 0.1)
    stats.tick()  # takes the backlog sample, keeps the counts
    assert row("default", minute_of(frozen_clock.now())).executed == 0
    frozen_clock.advance(60)
    stats.tick()
    assert (
        row("default", minute_of(frozen_clock.now()) - datetime.timedelta(minutes=1)).executed == 1
    )


def test_one_worker_samples_the_backlog_each_minute(frozen_clock):
    taskqueue.add(url="/echo")
    taskqueue.add(url="/echo", countdown=600)  # not due: not waiting
    Queue("pull-queue").add([Task(b"a", method="PULL"), Task(b"b", method="PULL")])
    Queue("pull-queue").lease_tasks(60, 1)
    first, second = MinuteStats("default"), MinuteStats("default")
    assert first.sample() is True
    assert second.sample() is False
    minute = minute_of(frozen_clock.now())
    assert row("default", minute).waiting == 1
    assert (row("pull-queue", minute).waiting, row("pull-queue", minute).leased) == (1, 1)
    assert row("fast", minute).waiting == 0
    frozen_clock.advance(60)
    assert second.sample() is True
    assert QueueMinuteStats.objects.filter(queue_name=SAMPLE_MARKER).count() == 2


def test_a_sample_and_counts_share_the_row(frozen_clock):
    stats = MinuteStats("default")
    stats.sample()
    stats.record("default", "succeeded", 0.1)
    stats.flush()
    default = row("default", minute_of(frozen_clock.now()))
    assert (default.executed, default.waiting) == (1, 0)


def test_pruner_keeps_the_totals_and_the_retention(frozen_clock, settings):
    settings.TASKQUEUE = {**settings.TASKQUEUE, "STATS_RETENTION_SECONDS": 86400}
    stats = MinuteStats("default")
    stats.record("default", "succeeded", 0.1)
    stats.flush()
    frozen_clock.advance(86400 - 60)
    stats.record("default", "succeeded", 0.1)
    stats.flush()
    frozen_clock.advance(120)
    # The first minute's row and its hour's.
    assert MinuteStatsPruner("default", 300).run(frozen_clock.now()) == 2
    assert totals("default").executed == 2
    # The second minute's row and its hour's, the totals.
    assert QueueMinuteStats.objects.filter(queue_name="default").count() == 3


def test_the_worker_records_each_outcome(frozen_clock):
    taskqueue.add(url="/echo")
    taskqueue.add(url="/echo")
    taskqueue.add(url="/boom", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0))
    taskqueue.add(url="/boom")
    assert run_tasks("default") == 4
    minute = row("default", minute_of(frozen_clock.now()))
    assert (minute.executed, minute.failed, minute.retried) == (4, 1, 1)
    assert minute.run_seconds > 0


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_writes_its_counts_when_it_stops(child_env):
    from ..conftest import run_burst_worker

    Queue("fast").add([Task(url="/echo") for _ in range(5)])
    Queue("fast").add(
        Task(url="/boom", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0))
    )
    run_burst_worker(child_env, "fast")
    fast = totals("fast")
    assert (fast.executed, fast.failed, fast.retried) == (6, 1, 0)
    minutes = QueueMinuteStats.objects.filter(queue_name="fast", span=MINUTE)
    assert sum(m.executed for m in minutes) == 6
    # The worker took the backlog sample of its first minute.
    assert QueueMinuteStats.objects.filter(queue_name=SAMPLE_MARKER).exists()


def test_hour_rows_add_up_the_minutes(frozen_clock):
    stats = MinuteStats("default")
    hour = hour_of(frozen_clock.now())
    for _ in range(3):
        stats.record("default", "succeeded", 0.1)
        stats.record("default", "failed", 0.1)
        frozen_clock.advance(60)
        stats.flush()
    assert (row("default", hour, HOUR).executed, row("default", hour, HOUR).failed) == (6, 3)


@pytest.mark.django_db(transaction=True)
def test_workers_flushing_at_once_lose_no_counts():
    """Sixteen workers stopping together all flush the same rows: none fails, all counts add up.

    On MariaDB concurrent upserts of the same keys can deadlock (the gap locks of a unique
    index); the flush tries again rather than drop the counts.
    """
    import threading

    from django.db import connections

    workers, rounds, queues = 8, 15, ["default", "fast", "other"]
    at = datetime.datetime(2026, 1, 1, 12, 30, tzinfo=datetime.UTC)
    start = threading.Barrier(workers)
    errors = []

    def worker():
        try:
            stats = MinuteStats("default")
            for round_ in range(rounds):
                for name in queues:  # each round a new minute: rows are inserted, not updated
                    for minute in (round_, round_ + 1, round_ + 2):
                        stats.record(
                            name, "succeeded", 0.1, at=at + datetime.timedelta(minutes=minute)
                        )
                start.wait()
                stats.flush()
                stats.sample(now=at + datetime.timedelta(minutes=round_ + 1))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            start.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert totals("default").executed == workers * rounds * 3
    assert row("fast", hour_of(at), span=HOUR).executed == workers * rounds * 3
    assert row("other", at + datetime.timedelta(minutes=2)).executed == workers * 3
