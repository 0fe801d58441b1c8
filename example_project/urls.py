"""URLs of the example project: the admin and the demo."""

from django.contrib import admin
from django.urls import include, path

from example_project import cron_views

urlpatterns = [
    path("admin/", admin.site.urls),
    # The pull-queue REST API; its schema and docs are at taskqueue/api/schema/ and .../docs/.
    path("taskqueue/api/", include("django_taskqueue.rest.urls")),
    # Metrics for Prometheus: staff with the view permission, or TASKQUEUE["METRICS_TOKEN"].
    path("taskqueue/metrics/", include("django_taskqueue.metrics.urls")),
    # The cron job of cron.yaml.
    path("cron/heartbeat", cron_views.heartbeat),
    path("", include("example_project.demo.urls")),
]
