"""The metrics view: a bearer token (`METRICS_TOKEN`) or a staff session with the view permission."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET

from ..conf import taskqueue_settings
from .exposition import CONTENT_TYPE, collect, render

#: What a session user needs: the admin's permission to view queues.
PERMISSION = "django_taskqueue.view_queuestate"


def _allowed(request: HttpRequest) -> bool | None:
    """True: allowed; False: credentials refused; None: no credentials given."""
    header = request.headers.get("Authorization", "")
    token = taskqueue_settings.METRICS_TOKEN
    if header.lower().startswith("bearer "):
        given = header[7:].strip()
        return bool(token) and constant_time_compare(given, token)
    user = request.user if hasattr(request, "user") else None
    if user is None or not user.is_authenticated:
        return None
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every queue's figures in Prometheus' text format."""
    allowed = _allowed(request)
    if not allowed:
        response = HttpResponse(
            "Forbidden\n" if allowed is False else "Authentication required\n",
            status=403 if allowed is False else 401,
            content_type="text/plain; charset=utf-8",
        )
        if allowed is None:
            response["WWW-Authenticate"] = 'Bearer realm="taskqueue metrics"'
        return response
    response = HttpResponse(render(collect()), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
