"""Errors of the REST API: each taskqueue exception as one DRF exception, and the JSON shape.

Every error the API answers is ``{"code": ..., "detail": ...}`` (validation errors add
``fields``, field name to messages). `code` is stable: a taskqueue exception's `code`
attribute, or DRF's own code (`not_authenticated`, `permission_denied`, `not_found`,
`throttled`, `parse_error`, `invalid`, ...), `unknown_field` for a body key that is not a
field, and `server_error` (500) for anything unforeseen, logged with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .. import exceptions as taskqueue_exceptions
from ..limits import MAX_PULL_TASK_SIZE_BYTES

logger = logging.getLogger("django_taskqueue")

#: What a body over the server's upload limit is told: the limit that matters to a client.
BODY_TOO_LARGE = (
    "The request body is larger than this server accepts. A pull task may hold at most "
    f"{MAX_PULL_TASK_SIZE_BYTES // 2**20} MiB ({MAX_PULL_TASK_SIZE_BYTES} bytes) of payload, "
    "which base64 makes about a third larger in the request."
)


class InvalidRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request is invalid."
    default_code = "invalid"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the task's current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The task is too large."
    default_code = "task_too_large"


class ServerError(exceptions.APIException):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_detail = "The server failed to answer; the error is in its log."
    default_code = "server_error"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task queue failed; try again."
    default_code = "transient_error"


# Most specific first: the first class an exception is an instance of decides.
STATUS_OF: tuple[tuple[type[taskqueue_exceptions.Error], type[exceptions.APIException]], ...] = (
    (taskqueue_exceptions.TaskTooLargeError, PayloadTooLarge),
    (taskqueue_exceptions.TaskAlreadyExistsError, Conflict),
    (taskqueue_exceptions.TombstonedTaskError, Conflict),
    (taskqueue_exceptions.TaskLeaseExpiredError, Conflict),
    (taskqueue_exceptions.QueuePausedError, Conflict),
    (taskqueue_exceptions.UnknownQueueError, exceptions.NotFound),
    (taskqueue_exceptions.UnknownTaskError, exceptions.NotFound),
    (taskqueue_exceptions.PermissionDeniedError, exceptions.PermissionDenied),
    (taskqueue_exceptions.TransientError, ServiceUnavailable),
    (taskqueue_exceptions.DatastoreError, ServiceUnavailable),
    (taskqueue_exceptions.InternalError, ServiceUnavailable),
    (taskqueue_exceptions.Error, InvalidRequest),
)


def to_api_exception(exc: taskqueue_exceptions.Error) -> exceptions.APIException:
    """Return the DRF exception that answers the taskqueue exception `exc`."""
    for error_class, api_class in STATUS_OF:
        if isinstance(exc, error_class):
            return api_class(detail=str(exc), code=exc.code)
    raise AssertionError("STATUS_OF ends with the root class")  # pragma: no cover


def _first_code(codes: Any) -> str:
    while isinstance(codes, dict | list) and codes:
        codes = next(iter(codes.values())) if isinstance(codes, dict) else codes[0]
    return codes if isinstance(codes, str) and codes else "invalid"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer every error of the API as JSON ``{"code", "detail"}`` with its status."""
    if isinstance(exc, taskqueue_exceptions.Error):
        exc = to_api_exception(exc)
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(detail=BODY_TOO_LARGE)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug or a set-up error (e.g. an authentication class whose app is not installed):
        # logged with its traceback, and still answered as JSON so no client parses HTML.
        view = context.get("view")
        logger.error(
            "event=rest_error view=%s",
            type(view).__name__ if view is not None else "-",
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        exc = ServerError()
        response = drf_exception_handler(exc, context)
        assert response is not None
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else None
        codes = exc.get_codes()
        response.data = {
            "code": _first_code(codes) if fields is None else _fields_code(codes),
            "detail": _summary(exc.detail),
        }
        if fields is not None:
            response.data["fields"] = fields
    else:
        detail = exc.detail
        code = getattr(detail, "code", None) or exc.default_code
        response.data = {"code": str(code), "detail": str(detail)}
    return response


def _fields_code(codes: Any) -> str:
    # Field errors answer `invalid`, unless a field was unknown: a stable code of its own.
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            found.append(value)

    walk(codes)
    return "unknown_field" if "unknown_field" in found else "invalid"


def _summary(detail: Any) -> str:
    """Flatten a validation error into one sentence: "field: message; field: message"."""
    if isinstance(detail, dict):
        parts = [f"{name}: {_summary(value)}" for name, value in detail.items()]
        return "; ".join(parts)
    if isinstance(detail, list):
        return " ".join(_summary(item) for item in detail)
    return str(detail)
