"""A URLconf that serves deferred tasks over HTTP, for tests/test_deferred.py."""

from django.urls import path

from django_taskqueue import deferred

urlpatterns = [path("tasks/deferred-over-http", deferred.view)]
