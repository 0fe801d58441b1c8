"""URLs of the demo."""

from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("greet/", views.greet, name="greet"),
    path("pull/add/", views.pull_add, name="pull-add"),
    path("pull/lease/", views.pull_lease, name="pull-lease"),
    path("callables/", views.run_callables, name="callables"),
    # The push-task handler: only the task queue calls it.
    path("tasks/greet/", views.greet_task, name="greet-task"),
]
