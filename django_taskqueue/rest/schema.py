"""The API's OpenAPI schema (drf-spectacular) and the Redoc page that shows it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from .. import __version__

SCHEMA_SETTINGS = {
    "TITLE": "django-taskqueue pull queues",
    "DESCRIPTION": "Lease, extend, insert and delete the tasks of pull queues over HTTP. "
    "Errors are JSON `{code, detail}`; see docs/rest.md.",
    "VERSION": __version__,
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["django_taskqueue.rest.schema.only_this_api"],
}


def only_this_api(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Keep the endpoints of this API: the project may have other DRF views."""
    from .views import QueueAPIView

    return [
        endpoint
        for endpoint in endpoints
        if isinstance(getattr(endpoint[3], "cls", None), type)
        and issubclass(endpoint[3].cls, QueueAPIView)
    ]


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema: YAML, or JSON with `?format=json` or `Accept: application/json`."""

    custom_settings = SCHEMA_SETTINGS
    serve_public = True


class SchemaDocsView(SpectacularRedocView):
    """A Redoc page for the schema (Redoc's script comes from drf-spectacular's REDOC_DIST)."""

    url_name = "taskqueue_api:schema"
    template_name = "django_taskqueue/rest/redoc.html"
    title = SCHEMA_SETTINGS["TITLE"]
