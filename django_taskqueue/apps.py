"""App configuration: imports checks and signal receivers, nothing more."""

from django.apps import AppConfig


class TaskQueueConfig(AppConfig):
    name = "django_taskqueue"
    verbose_name = "Task queues"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks registers the system checks; handlers, the direct handlers of the deferred
        # library and of Django's Tasks framework; taskqueue hands `Queue` to `task`, whose
        # `Task.add` needs it.
        from . import checks, handlers, taskqueue  # noqa: F401
