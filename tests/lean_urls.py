"""The URLconf of tests/lean_settings.py: the task handlers alone."""

from django.urls import include, path

urlpatterns = [path("", include("tests.handlers"))]
