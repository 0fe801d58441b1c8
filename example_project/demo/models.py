"""What the demo's push-task handler records."""

from django.db import models


class Greeting(models.Model):
    """One run of the greeting task handler."""

    name = models.CharField(max_length=100)
    queue_name = models.CharField(max_length=100)
    task_name = models.CharField(max_length=500)
    retry_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Hello, {self.name} (task {self.task_name})"
