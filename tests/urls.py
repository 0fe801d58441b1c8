"""URLs of the test project: the admin, the REST API and the task handlers of the tests."""

from importlib.util import find_spec

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
]

# Task handler views live in tests/handlers.py (a module with its own `urlpatterns`), mounted at
# the root so that App Engine's default task URL, /_ah/queue/<queue name>, resolves as is.
# Included only once the module exists, so the suite runs while it is being written.
if find_spec("tests.handlers") is not None:
    urlpatterns.append(path("", include("tests.handlers")))

# The REST API, once django_taskqueue.rest exists.
if find_spec("django_taskqueue.rest") is not None and find_spec("django_taskqueue.rest.urls"):
    urlpatterns.append(path("taskqueue/api/", include("django_taskqueue.rest.urls")))

# The metrics endpoint (opt-in in a project, as here).
if find_spec("django_taskqueue.metrics") is not None:
    urlpatterns.append(path("taskqueue/metrics/", include("django_taskqueue.metrics.urls")))
