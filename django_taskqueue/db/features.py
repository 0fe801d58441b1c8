"""What each database vendor's task store can do, as flags (in the manner of Django's features).

Callers branch on a flag; the vendor's store holds the fast path the flag announces.
"""

from __future__ import annotations


class BaseFeatures:
    """The portable store: the ORM, in transactions, on any database Django supports."""

    #: The claim (lock the bucket, refill, pick, mark RUNNING, write back) is one statement.
    #: Without it the claim is a transaction of several round trips.
    can_claim_in_one_statement = False
    #: A committed add can wake idle workers (`TaskStore.listen`); without it workers find
    #: new tasks by polling every POLL_INTERVAL_SECONDS.
    can_notify_workers = False
    #: The wake comes from the database itself (PostgreSQL's LISTEN/NOTIFY, sent by the add's
    #: own statement). Without it, but with `can_notify_workers`, the listener watches the
    #: newest task id with a tiny read every few tens of milliseconds (`db/watch.py`).
    can_push_notifications = False
    #: Rows can be locked one by one (SELECT ... FOR UPDATE). Without row locks, a claim first
    #: takes the database's write lock (`TaskStore.lock_for_claim`).
    has_row_locks = True


class PostgreSQLFeatures(BaseFeatures):
    can_claim_in_one_statement = True
    can_notify_workers = True
    can_push_notifications = True


class MySQLFeatures(BaseFeatures):
    can_notify_workers = True


class SQLiteFeatures(BaseFeatures):
    can_notify_workers = True
    has_row_locks = False
