"""URL of the metrics endpoint; include it where the scraper should find it."""

from django.urls import path

from .views import metrics_view

app_name = "django_taskqueue_metrics"

urlpatterns = [
    path("", metrics_view, name="metrics"),
]
