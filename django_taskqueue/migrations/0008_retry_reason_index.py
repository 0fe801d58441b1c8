# The rows with a retry reason get an index of their own (partial on PostgreSQL and SQLite).

import django_taskqueue.indexes
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_taskqueue", "0007_partial_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="taskrecord",
            index=django_taskqueue.indexes.PartialIndex(
                fields=["queue_name", "leased_at", "last_retry_reason"],
                full_fields=["queue_name", "last_retry_reason"],
                name="taskqueue_reason_idx",
                where=models.Q(("last_retry_reason__isnull", False)),
            ),
        ),
    ]
