"""Statements that collide: a real deadlock is recognised, and the statement is tried again."""

import threading

import pytest
from django.db import DatabaseError, IntegrityError, connection, connections, transaction

from django_taskqueue.dispatch.dbretry import is_conflict, retry_conflicts
from django_taskqueue.models import QueueState

pytestmark = pytest.mark.django_db(transaction=True)


def provoke_deadlock():
    """Two transactions lock two rows in opposite orders; return what the loser raised."""
    QueueState.objects.bulk_create([QueueState(name="a"), QueueState(name="b")])
    both_hold_one = threading.Barrier(2, timeout=30)
    raised = []

    def lock(first, second):
        try:
            with transaction.atomic():
                QueueState.objects.filter(name=first).update(tokens=1)
                both_hold_one.wait()
                QueueState.objects.filter(name=second).update(tokens=2)
        except DatabaseError as error:
            raised.append(error)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=lock, args=("a", "b")),
        threading.Thread(target=lock, args=("b", "a")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(raised) == 1, raised  # the database picked one victim
    return raised[0]


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite takes one writer at a time: no deadlock to see"
)
def test_a_real_deadlock_is_a_conflict_and_is_tried_again():
    deadlock = provoke_deadlock()
    assert is_conflict(deadlock)
    calls = []

    def statement():
        calls.append(1)
        if len(calls) == 1:
            raise deadlock
        return "done"

    assert retry_conflicts(statement) == "done"
    assert len(calls) == 2


def test_other_errors_are_not_tried_again():
    QueueState.objects.create(name="a")
    calls = []

    def statement():
        calls.append(1)
        QueueState.objects.create(name="a")

    with pytest.raises(IntegrityError) as raised:
        retry_conflicts(statement)
    assert not is_conflict(raised.value)
    assert len(calls) == 1


def test_a_conflict_that_lasts_is_raised_in_the_end():
    error = DatabaseError("deadlock")
    error.__cause__ = type("DriverError", (Exception,), {"sqlstate": "40P01"})()
    calls = []

    def statement():
        calls.append(1)
        raise error

    with pytest.raises(DatabaseError):
        retry_conflicts(statement, attempts=3)
    assert len(calls) == 3
