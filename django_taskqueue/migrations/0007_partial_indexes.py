# The task table's four secondary indexes become partial (PartialIndex) on PostgreSQL and SQLite.

from django.db import migrations, models

import django_taskqueue.indexes


class RemoveIndexWherePartial(migrations.RemoveIndex):
    """RemoveIndex, only on a database that builds partial indexes.

    Elsewhere (MySQL, MariaDB) a PartialIndex is the same full index as before: it stays.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.features.supports_partial_indexes:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.features.supports_partial_indexes:
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class AddIndexWherePartial(migrations.AddIndex):
    """AddIndex, only on a database that builds partial indexes (see RemoveIndexWherePartial)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.features.supports_partial_indexes:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.features.supports_partial_indexes:
            super().database_backwards(app_label, schema_editor, from_state, to_state)


LIVE = models.Q(("state", "queued"), ("state", "running"), _connector="OR")


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskqueue", "0006_worker_heartbeat"),
    ]

    operations = [
        RemoveIndexWherePartial(model_name="taskrecord", name="taskqueue_due_idx"),
        RemoveIndexWherePartial(model_name="taskrecord", name="taskqueue_tag_idx"),
        RemoveIndexWherePartial(model_name="taskrecord", name="taskqueue_finished_idx"),
        RemoveIndexWherePartial(model_name="taskrecord", name="taskqueue_leased_idx"),
        AddIndexWherePartial(
            model_name="taskrecord",
            index=django_taskqueue.indexes.PartialIndex(
                fields=["queue_name", "state", "-priority", "eta"],
                name="taskqueue_due_idx",
                where=LIVE,
            ),
        ),
        AddIndexWherePartial(
            model_name="taskrecord",
            index=django_taskqueue.indexes.PartialIndex(
                fields=["queue_name", "state", "tag", "eta"],
                name="taskqueue_tag_idx",
                where=models.Q(LIVE, ("tag__isnull", False)),
            ),
        ),
        AddIndexWherePartial(
            model_name="taskrecord",
            index=django_taskqueue.indexes.PartialIndex(
                fields=["state", "finished_at"],
                name="taskqueue_finished_idx",
                where=models.Q(("finished_at__isnull", False)),
            ),
        ),
        AddIndexWherePartial(
            model_name="taskrecord",
            index=django_taskqueue.indexes.PartialIndex(
                fields=["queue_name", "leased_at"],
                name="taskqueue_leased_idx",
                where=models.Q(("leased_at__isnull", False)),
            ),
        ),
    ]
