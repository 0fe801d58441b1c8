"""Metrics for Prometheus: an opt-in URL that exposes every queue's figures in its text format.

path("taskqueue/metrics/", include("django_taskqueue.metrics.urls")),
"""
