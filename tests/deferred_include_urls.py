"""A URLconf that includes `django_taskqueue.deferred` under a prefix, as a project would."""

from django.urls import include, path

urlpatterns = [path("app/", include("django_taskqueue.deferred"))]
