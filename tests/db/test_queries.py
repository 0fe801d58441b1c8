"""Round trips of the hot paths, pinned: a batch is a few statements, never one per task."""

import pytest
from django.db import connection, transaction

from django_taskqueue import clock
from django_taskqueue.models import QueueState
from django_taskqueue.taskqueue import Queue, Task, TaskAlreadyExistsError

from ..conftest import claim_now

# Without an outer test transaction, so savepoints do not count as statements.
pytestmark = pytest.mark.django_db(transaction=True)


def pull_tasks(count, prefix="t"):
    return [Task(b"x", method="PULL", name=f"{prefix}{i}") for i in range(count)]


def fill_pull_queue(count):
    queue = Queue("pull-queue")
    for start in range(0, count, 100):
        queue.add(pull_tasks(100, prefix=f"b{start}-"))
    return queue


def test_add_one_task_is_one_statement(django_assert_num_queries):
    Queue().add(Task(url="/x", name="warm-up"))
    with django_assert_num_queries(1):
        Queue().add(Task(url="/x"))
    with django_assert_num_queries(1):
        Queue().add(Task(url="/x", name="named"))


def test_the_add_of_one_task_is_one_statement_from_the_first_of_a_session():
    # The add issues no PREPARE (on PostgreSQL, psycopg prepares it in the same call, outside a
    # transaction): the first add of a database session costs one statement too, in a
    # transaction or not.
    from django.test.utils import CaptureQueriesContext

    connection.close()  # a new database session
    counts = []
    for name in ("a", "b", "c"):
        with CaptureQueriesContext(connection) as queries:
            Queue().add(Task(url="/x", name=name))
        counts.append(len(queries.captured_queries))
    assert counts == [1, 1, 1]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        Queue().add(Task(url="/x", name="d"))
    assert not any(q["sql"].startswith(("PREPARE", "EXECUTE")) for q in queries.captured_queries)
    assert Queue().fetch_statistics().tasks == 4


def prepared_adds():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%INSERT INTO%%'"
        )
        return cursor.fetchone()[0]


def _psycopg3() -> bool:
    try:
        from django.db.backends.postgresql.psycopg_any import is_psycopg3
    except ImportError:  # neither psycopg nor psycopg2 installed: not on PostgreSQL
        return False
    return is_psycopg3


@pytest.mark.skipif(
    connection.vendor != "postgresql" or not _psycopg3(),
    reason="PostgreSQL through psycopg 3 prepares the add in its own call (psycopg2 cannot)",
)
def test_the_add_in_autocommit_is_prepared_and_survives_losing_its_statement(caplog):
    connection.close()  # a new database session
    for name in ("a", "b", "c"):
        Queue().add(Task(url="/x", name=name))
    Queue().add(Task(url="/x"))
    # One statement for named tasks and one for unnamed ones (no ON CONFLICT), each once.
    assert prepared_adds() == 2
    with transaction.atomic():
        Queue().add(Task(url="/x", name="d"))  # never prepared inside a transaction
        Queue().add(Task(url="/x"))
    assert prepared_adds() == 2
    with pytest.raises(TaskAlreadyExistsError):
        Queue().add(Task(url="/x", name="a"))
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a pooler's DISCARD ALL would
    Queue().add(Task(url="/x", name="e"))
    assert "event=prepared_statements_off" in caplog.text
    Queue().add(Task(url="/x"))
    assert prepared_adds() == 0  # this session's adds are unprepared from then on
    with pytest.raises(TaskAlreadyExistsError):
        Queue().add(Task(url="/x", name="e"))
    assert Queue().fetch_statistics().tasks == 8


def test_add_100_tasks_is_one_statement(django_assert_num_queries):
    with django_assert_num_queries(1):
        Queue().add([Task(url=f"/x{i}") for i in range(100)])
    with django_assert_num_queries(1):
        Queue("pull-queue").add(pull_tasks(100))


def test_lease_1000_tasks(django_assert_num_queries):
    queue = fill_pull_queue(1000)
    # PostgreSQL: one statement (a locking SELECT fused into the UPDATE). Elsewhere a locking
    # SELECT and an UPDATE, SQLite first taking the write lock with an empty UPDATE. The
    # transaction's BEGIN and COMMIT are statements of their own.
    expected = {"postgresql": 3, "sqlite": 5, "mysql": 4}[connection.vendor]
    with django_assert_num_queries(expected):
        tasks = queue.lease_tasks(60, 1000)
    assert len(tasks) == 1000


def test_delete_1000_tasks(django_assert_num_queries):
    queue = fill_pull_queue(1000)
    tasks = queue.lease_tasks(60, 1000)
    # PostgreSQL and SQLite: one UPDATE ... RETURNING. MySQL has no UPDATE ... RETURNING: a
    # locking SELECT names the live rows first, in a transaction (BEGIN and COMMIT count).
    expected = 4 if connection.vendor == "mysql" else 1
    with django_assert_num_queries(expected):
        queue.delete_tasks(tasks)
    assert all(task.was_deleted for task in tasks)


def test_conflicting_name_costs_one_lookup(django_assert_num_queries):
    Queue().add(Task(url="/x", name="taken"))
    with django_assert_num_queries(2):
        with pytest.raises(Exception, match="already exists"):
            Queue().add(Task(url="/x", name="taken"))


def test_a_pooler_that_drops_prepared_statements_turns_them_off(caplog):
    # A pooler in transaction mode may run PREPARE and EXECUTE on two server connections:
    # the EXECUTE then finds no such statement. Simulated by dropping every statement right
    # after it is prepared. Adds and claims go on unprepared, and say so once in the log.
    from django.test.utils import CaptureQueriesContext

    def pooler(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("PREPARE"):
            with context["connection"].connection.cursor() as raw:  # psycopg 3 or psycopg2
                raw.execute("DEALLOCATE ALL")
        return result

    QueueState.objects.create(name="default")
    connection.close()
    with connection.execute_wrapper(pooler), CaptureQueriesContext(connection) as queries:
        Queue().add(Task(url="/x", name="a"))
        Queue().add(Task(url="/x", name="b"))
        claimed = claim_now("default", clock, max_tasks=5)
    assert Queue().fetch_statistics().tasks == 2
    assert len(claimed.tasks) == 2
    verbs = [q["sql"].split()[0] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert verbs.count("PREPARE") == 1  # tried once, then never again on this connection
        assert "event=prepared_statements_off" in caplog.text
    else:
        assert "PREPARE" not in verbs


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's commit modes")
def test_postgresql_claims_and_successes_commit_asynchronously_on_their_own_only():
    from django.test.utils import CaptureQueriesContext

    from django_taskqueue.testing import run_tasks

    Queue("fast").add([Task(url="/echo", name=f"t{i}") for i in range(3)])
    with CaptureQueriesContext(connection) as queries:
        assert run_tasks("fast") == 3
    prepared = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("PREPARE")]
    assert len(prepared) == 2  # the claim and the successes, each its own transaction
    assert all("set_config('synchronous_commit', 'off', true)" in sql for sql in prepared)
    assert synchronous_commit() == "on"  # for that transaction alone, not the session
    # Inside the caller's transaction the caller's commit decides: nothing is turned off.
    Queue("fast").add([Task(url="/echo", name=f"u{i}") for i in range(3)])
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert run_tasks("fast") == 3
        assert synchronous_commit() == "on"
    assert not any("set_config" in q["sql"] for q in queries.captured_queries)
