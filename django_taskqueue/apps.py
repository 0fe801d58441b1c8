"""App configuration: imports checks and signal receivers, nothing more."""

from django.apps import AppConfig


class TaskQueueConfig(AppConfig):
    name = "django_taskqueue"
    verbose_name = "Task queues"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
