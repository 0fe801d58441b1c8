"""The admin's base for rows that are shown and changed only by actions (queues, tasks, cron jobs)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from .conf import taskqueue_settings


class ReadMostlyAdmin(admin.ModelAdmin):
    """Rows are shown, never added, edited in a form or deleted: actions make every change.

    The rows are read from the task queue's database (`TASKQUEUE["DATABASE"]`).
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Deleting a task row would free its name early; the delete action tombstones it.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # The change list's actions need the permission; a row's own page is read-only.
        return obj is None and super().has_change_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).using(taskqueue_settings.DATABASE)
