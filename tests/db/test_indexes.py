"""The task table's partial indexes: built where the database can, and used by their queries."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Q

from django_taskqueue import clock, dashboard, figures
from django_taskqueue.indexes import PartialIndex
from django_taskqueue.models import FINISHED_STATES, LIVE, TaskRecord, TaskState

pytestmark = pytest.mark.django_db

PARTIAL = {
    "taskqueue_due_idx",
    "taskqueue_tag_idx",
    "taskqueue_finished_idx",
    "taskqueue_leased_idx",
    "taskqueue_reason_idx",
}


def index_definitions():
    """Index name -> its definition as the database keeps it."""
    table = TaskRecord._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table]
            )
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s",
                [table],
            )
        else:
            cursor.execute(
                "SELECT index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index) "
                "FROM information_schema.statistics WHERE table_schema = DATABASE() "
                "AND table_name = %s GROUP BY index_name",
                [table],
            )
        return {name: definition or "" for name, definition in cursor.fetchall()}


def test_the_indexes_are_partial_where_the_database_can_build_them():
    definitions = index_definitions()
    assert PARTIAL <= set(definitions)
    for name in PARTIAL:
        partial = " WHERE " in definitions[name].upper()
        assert partial == connection.features.supports_partial_indexes, definitions[name]


def test_a_partial_index_is_an_ordinary_index_to_the_model_checks():
    # MySQL and MariaDB build the full index: no models.W037 (a condition they would ignore).
    messages = TaskRecord.check(databases=[connection.alias])
    assert [m.id for m in messages] == []
    assert all(index.condition is None for index in TaskRecord._meta.indexes)


def test_a_partial_index_deconstructs_with_its_condition():
    index = PartialIndex(fields=["queue_name", "eta"], name="some_idx", where=LIVE)
    path, args, kwargs = index.deconstruct()
    assert path == "django_taskqueue.indexes.PartialIndex"
    assert kwargs == {"fields": ["queue_name", "eta"], "name": "some_idx", "where": LIVE}
    assert PartialIndex(*args, **kwargs) == index
    assert index != PartialIndex(fields=["queue_name", "eta"], name="some_idx", where=~LIVE)
    with pytest.raises(ValueError):
        PartialIndex(fields=["eta"], name="x_idx", where=LIVE, condition=Q(eta=None))


def test_the_migrations_match_the_models():
    call_command("makemigrations", "django_taskqueue", check=True, dry_run=True, verbosity=0)


@pytest.fixture
def plans():
    """EXPLAIN of a queryset, with table scans priced out where the planner allows it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")

    def plan(queryset):
        return queryset.explain()

    return plan


def live_queries(now):
    tasks = TaskRecord.objects
    due = tasks.filter(queue_name="q", state=TaskState.QUEUED, eta__lte=now)
    return {
        "taskqueue_due_idx": [
            due.order_by("-priority", "eta", "id"),
            tasks.filter(queue_name="q", state=TaskState.RUNNING),
            tasks.filter(LIVE, queue_name="q"),
            tasks.live().filter(queue_name="q"),
            tasks.filter(figures.live(now).rows, queue_name="q"),
        ],
        "taskqueue_tag_idx": [due.filter(tag="t").order_by("eta")],
        "taskqueue_finished_idx": [
            tasks.filter(state__in=FINISHED_STATES, finished_at__lt=now),
            tasks.filter(figures.failed(now).rows, queue_name="q"),
        ],
        "taskqueue_leased_idx": [tasks.filter(figures.executed(now).rows, queue_name="q")],
        "taskqueue_reason_idx": [dashboard.errors_by_reason("q", now)],
    }


@pytest.mark.skipif(
    not connection.features.supports_partial_indexes, reason="the indexes are full ones here"
)
def test_each_query_can_use_its_partial_index(plans):
    # The database may use a partial index only when it can prove from the query that every
    # row the query wants is in it (SQLite proves little: see PartialIndex).
    now = clock.now()
    for index, querysets in live_queries(now).items():
        for queryset in querysets:
            plan = plans(queryset)
            assert index in plan, f"{index} not in the plan of {queryset.query}:\n{plan}"


def test_the_retry_reason_index_has_the_order_of_its_kind():
    # Partial: (queue, leased_at, reason), which SQLite's planner prefers to the leased index;
    # full (MariaDB, MySQL): (queue, reason), so the rows without a reason are one range the
    # query skips, and a claim (which changes leased_at) leaves the index alone.
    definition = index_definitions()["taskqueue_reason_idx"]
    if connection.features.supports_partial_indexes:
        assert "leased_at" in definition
        assert "last_retry_reason IS NOT NULL" in definition.replace('"', "")
    else:
        assert definition == "queue_name,last_retry_reason"
    index = next(i for i in TaskRecord._meta.indexes if i.name == "taskqueue_reason_idx")
    path, args, kwargs = index.deconstruct()
    assert kwargs["full_fields"] == ["queue_name", "last_retry_reason"]
    assert PartialIndex(*args, **kwargs) == index


def test_the_errors_by_reason_read_the_retry_reason_index(plans):
    # On every database, MariaDB's full index included: the query reads the rows with a
    # reason, not a day of the queue's attempts.
    plan = plans(dashboard.errors_by_reason("q", clock.now()))
    assert "taskqueue_reason_idx" in plan, plan
