"""The scenarios' models in the admin, beside the task queue's own pages."""

from django.contrib import admin

from .models import PlayerScore, Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["filename", "status", "task_name", "created_at", "parsed_at"]
    readonly_fields = [*list_display, "result", "error"]
    exclude = ["data"]


@admin.register(PlayerScore)
class PlayerScoreAdmin(admin.ModelAdmin):
    list_display = ["game", "player", "points", "events", "updated_at"]
    list_filter = ["game"]
