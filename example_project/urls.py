"""URLs of the example project: the admin and the demo."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # path("taskqueue/api/", include("django_taskqueue.rest.urls")),
    path("", include("example_project.demo.urls")),
]
