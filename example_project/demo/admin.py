"""The demo's model in the admin, beside the task queue's own pages."""

from django.contrib import admin

from .models import Greeting


@admin.register(Greeting)
class GreetingAdmin(admin.ModelAdmin):
    list_display = ["name", "queue_name", "task_name", "retry_count", "created_at"]
    readonly_fields = list_display
