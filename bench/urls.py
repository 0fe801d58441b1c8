"""The one URL of the benchmark project: the no-op push task handler, set up as the docs say."""

from django.urls import path

from django_taskqueue.security import task_view

from . import jobs

urlpatterns = [path("bench/noop", task_view(jobs.noop_view))]
