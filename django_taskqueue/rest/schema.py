"""The API's OpenAPI schema (drf-spectacular) and the Redoc page that shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import drf_spectacular_sidecar
from django.http import FileResponse, HttpRequest
from django.urls import reverse
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from .. import __version__

SCHEMA_TITLE = "django-taskqueue pull queues"
SCHEMA_SETTINGS = {
    "TITLE": SCHEMA_TITLE,
    "DESCRIPTION": "Lease, extend, insert and delete the tasks of pull queues over HTTP. "
    "Errors are JSON `{code, detail}`; see docs/rest.md.",
    "VERSION": __version__,
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["django_taskqueue.rest.schema.only_this_api"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "django_taskqueue.rest.schema.closed_request_bodies",
    ],
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


def closed_request_bodies(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Mark request bodies `additionalProperties: false`: an unknown key is `unknown_field`."""
    from .serializers import RequestSerializer

    names = {
        cls.__name__.removesuffix("Serializer") + "Request"
        for cls in RequestSerializer.__subclasses__()
    }
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name in names:
            component["additionalProperties"] = False
    return result


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema: YAML, or JSON with `?format=json` or `Accept: application/json`."""

    custom_settings = SCHEMA_SETTINGS
    serve_public = True


class SchemaDocsView(SpectacularRedocView):
    """A Redoc page for the schema; its script is served by the API itself (no CDN)."""

    url_name = "taskqueue_api:schema"
    template_name = "django_taskqueue/rest/redoc.html"
    title = SCHEMA_TITLE

    def _redoc_standalone(self) -> str:  # type: ignore[override]
        return reverse("taskqueue_api:schema-docs-script")


#: Redoc's script, as packaged by drf-spectacular-sidecar.
REDOC_SCRIPT = (
    Path(drf_spectacular_sidecar.__file__).parent
    / "static"
    / "drf_spectacular_sidecar"
    / "redoc"
    / "bundles"
    / "redoc.standalone.js"
)


def redoc_script(request: HttpRequest) -> FileResponse:
    """Serve Redoc's script, so the docs page works on a network with no way out."""
    response = FileResponse(REDOC_SCRIPT.open("rb"), content_type="text/javascript")
    response["Cache-Control"] = "public, max-age=86400"
    return response
