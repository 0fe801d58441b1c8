"""The task store uses the connection of the queue's alias, never `default`'s.

`TASKQUEUE["DATABASE"]` may name a database beside another `default`. Each test points
`default` at the suite's second database (`other`, SQLite) for its duration, so that a statement
built with `default`'s connection would be built for the wrong database.

What such a mistake would break differs by vendor. On PostgreSQL the store PREPAREs its hot-path
statements with typed parameters: built with SQLite's connection, the claim and the
success would declare SQLite's column types (`datetime`, `bool`), which PostgreSQL rejects, so
the PostgreSQL suite runs those verbs for real through the queue's alias. SQLite and MariaDB have
no prepared statements: their suites check that the store holds the queue's connection and that
its statements are quoted and run there.
"""

from __future__ import annotations

import datetime

import pytest
from django.db import connections

from django_taskqueue import clock
from django_taskqueue.db import store
from django_taskqueue.db.rows import ClaimKey
from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "queue", "other"])


@pytest.fixture
def queue_on_second_alias(settings):
    """The queue's alias is `queue`; `default` is the SQLite database `other` meanwhile."""
    settings.TASKQUEUE = {**settings.TASKQUEUE, "DATABASE": "queue"}
    real_default = connections["default"]
    connections["default"] = connections["other"]
    try:
        yield connections["queue"]
    finally:
        connections["default"] = real_default


def test_default_is_another_database_during_the_test(queue_on_second_alias):
    assert connections["default"].vendor == "sqlite"
    assert connections["default"] is not queue_on_second_alias


def test_the_store_holds_the_queue_alias_connection(queue_on_second_alias):
    tasks = store("queue")
    assert tasks.connection is queue_on_second_alias
    assert tasks.connection.vendor == queue_on_second_alias.vendor
    assert tasks.table == queue_on_second_alias.ops.quote_name(TaskRecord._meta.db_table)


def test_add_claim_and_success_through_the_queue_alias(queue_on_second_alias):
    from django_taskqueue.db import postgresql

    if queue_on_second_alias.vendor == "postgresql":
        # Built afresh under this test's `default`, as in a process whose default is not
        # PostgreSQL (the statements are cached per process).
        postgresql.clear_statement_cache()
    Queue("default").add(Task(url="/x", name="a"))
    assert TaskRecord.objects.using("queue").filter(name="a", state=TaskState.QUEUED).exists()

    tasks = store("queue")
    now = clock.now()
    until = now + datetime.timedelta(seconds=60)
    first = tasks.claim(
        "default", now=now, worker_id="w", max_tasks=5, lease_until=until, bucket=None
    )
    claimed = (
        first.tasks
        or tasks.claim(
            "default", now=now, worker_id="w", max_tasks=5, lease_until=until, bucket=None
        ).tasks
    )
    assert [t.name for t in claimed] == ["a"]
    done = tasks.mark_succeeded([claimed[0].id], "w", claimed[0].leased_at, 200, now)
    assert done == {claimed[0].id}
    assert TaskRecord.objects.using("queue").get(name="a").state == TaskState.SUCCEEDED
    assert not tasks.release(ClaimKey(claimed[0].id, "w", claimed[0].leased_at), now)
