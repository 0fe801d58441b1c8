"""What each database vendor's task store can do, as flags (in the manner of Django's features).

Callers branch on a flag; the vendor's store holds the fast path the flag announces.
"""

from __future__ import annotations


class BaseFeatures:
    """The portable store: the ORM, in transactions, on any database Django supports."""

    #: The claim (lock the bucket, refill, pick, mark RUNNING, write back) is one statement.
    #: Without it the claim is a transaction of several round trips.
    can_claim_in_one_statement = False
    #: A committed add can wake idle workers (PostgreSQL's LISTEN/NOTIFY); without it
    #: workers find new tasks by polling.
    can_notify_workers = False
    #: Rows can be locked one by one (SELECT ... FOR UPDATE). Without row locks, a claim first
    #: takes the database's write lock (`TaskStore.lock_for_claim`).
    has_row_locks = True


class PostgreSQLFeatures(BaseFeatures):
    can_claim_in_one_statement = True
    can_notify_workers = True


class MySQLFeatures(BaseFeatures):
    pass


class SQLiteFeatures(BaseFeatures):
    has_row_locks = False
