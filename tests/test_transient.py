"""A database that does not answer in time is App Engine's TransientError, not a crash."""

import pytest
from django.db import connection, connections

from django_taskqueue import taskqueue
from django_taskqueue.models import TaskRecord
from django_taskqueue.taskqueue import Queue, Task


@pytest.fixture
def table_locked_by_another_connection():
    """Another connection holds an exclusive lock on the task table; ours waits about 1 s."""
    other = connections.create_connection("default")
    table = connection.ops.quote_name(TaskRecord._meta.db_table)
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SET lock_timeout = '1s'")
        elif vendor == "mysql":
            cursor.execute("SET SESSION lock_wait_timeout = 1")
    if vendor == "sqlite":
        connection.connection.execute("PRAGMA busy_timeout = 1000")
    other.connect()
    other.set_autocommit(False)
    with other.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        elif vendor == "mysql":
            cursor.execute(f"LOCK TABLES {table} WRITE")
        else:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(f"DELETE FROM {table} WHERE 0")

    def release():
        if other.connection is None:
            return
        if vendor == "mysql":
            with other.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")
        other.rollback()
        other.close()

    try:
        yield release
    finally:
        release()
        with connection.cursor() as cursor:
            if vendor == "postgresql":
                cursor.execute("SET lock_timeout = 0")
            elif vendor == "mysql":
                cursor.execute("SET SESSION lock_wait_timeout = DEFAULT")


@pytest.mark.django_db(transaction=True)
def test_lease_on_a_locked_table_is_transient(table_locked_by_another_connection):
    with pytest.raises(taskqueue.TransientError) as info:
        Queue("pull-queue").lease_tasks(10, 10)
    assert info.value.__cause__ is not None


@pytest.mark.django_db(transaction=True)
def test_add_on_a_locked_table_is_transient(table_locked_by_another_connection):
    with pytest.raises(taskqueue.TransientError):
        Queue("default").add(Task(url="/x"))


@pytest.fixture
def survivor():
    Queue("pull-queue").add(Task(b"x", method="PULL", name="survivor"))


@pytest.mark.django_db(transaction=True)
def test_nothing_is_lost_once_the_lock_is_gone(survivor, table_locked_by_another_connection):
    queue = Queue("pull-queue")
    with pytest.raises(taskqueue.TransientError):
        queue.lease_tasks(10, 10)
    table_locked_by_another_connection()  # the other connection lets go
    assert [t.name for t in queue.lease_tasks(10, 10)] == ["survivor"]
