"""Views of the REST API: each one validates JSON, calls `django_taskqueue.taskqueue` (or
`django_taskqueue.inspect` to read), and answers JSON. No view touches the models."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.schemas.inspectors import ViewInspector
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from .. import inspect
from ..conf import taskqueue_settings
from ..exceptions import (
    InvalidEtaError,
    InvalidQueueModeError,
    InvalidTagError,
    InvalidTaskNameError,
    TaskTooLargeError,
    UnknownTaskError,
)
from ..queues import QueueConfig, all_queue_configs
from ..taskqueue import MAX_PULL_TASK_SIZE_BYTES, MAX_TAG_LENGTH, Queue, Task
from . import serializers
from .exceptions import exception_handler
from .parsers import LimitedJSONParser
from .permissions import QueueAccess, may_see
from .throttling import LeaseRateThrottle

_E = serializers.ErrorSerializer

#: The earliest ETA an insert takes: the Unix epoch.
EARLIEST_ETA = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    meaning = {
        400: "Bad input (`invalid`, `parse_error`, or the taskqueue code, e.g. "
        "`invalid_queue_mode`, `invalid_lease_time`, `invalid_task_name`).",
        401: "No credentials (`not_authenticated`, `authentication_failed`).",
        403: "Not allowed by the queue's acl or Django permissions (`permission_denied`).",
        404: "Unknown queue or task (`unknown_queue`, `unknown_task`, `not_found`).",
        409: "Name conflict or stale lease (`task_already_exists`, `tombstoned_task`, "
        "`task_lease_expired`, `queue_paused`).",
        413: "Payload too large (`task_too_large`).",
        415: "Not JSON (`unsupported_media_type`).",
        429: "Too many lease requests on this queue (`throttled`); see Retry-After.",
    }
    return {code: OpenApiResponse(_E, description=meaning[code]) for code in codes}


_QUEUE = OpenApiParameter(
    "queue",
    str,
    OpenApiParameter.PATH,
    description="A pull queue of queue.yaml.",
    pattern=r"^[a-zA-Z0-9-]{1,100}$",
)
_NAME = OpenApiParameter(
    "name",
    str,
    OpenApiParameter.PATH,
    description="The task's name.",
    pattern=r"^[a-zA-Z0-9_-]{1,500}$",
)


def document(**kwargs: Any) -> Any:
    """`extend_schema` on drf-spectacular's AutoSchema, whatever DEFAULT_SCHEMA_CLASS says."""

    path = kwargs.pop("path", ())
    kwargs["parameters"] = [*path, *kwargs.get("parameters", ())]

    def decorate(method: Any) -> Any:
        # extend_schema builds on the function's `schema`, else on the project's default
        # schema class, which need not be drf-spectacular's.
        method.schema = AutoSchema
        return extend_schema(**kwargs)(method)

    return decorate


_READ_ERRORS = (400, 401, 403, 404)
_WRITE_ERRORS = (400, 401, 403, 404, 415)


class QueueAPIView(APIView):
    """Base of the API's views: JSON in and out, the package's authentication and errors."""

    schema: ViewInspector | None = AutoSchema()
    renderer_classes = [JSONRenderer]
    parser_classes = [LimitedJSONParser]
    permission_classes = [QueueAccess]
    #: The right the caller needs on the URL's queue, by HTTP method (see permissions.py).
    queue_rights: dict[str, str] = {}

    def get_authenticators(self) -> list[Any]:
        return [import_string(path)() for path in taskqueue_settings.REST_AUTHENTICATION_CLASSES]

    def get_exception_handler(self) -> Any:
        return exception_handler

    @property
    def queue_right(self) -> str | None:
        if "queue" not in self.kwargs:
            return None
        return self.queue_rights.get(self.request.method or "", "see")

    def get_queue_config(self) -> QueueConfig:
        """Return the URL's queue configuration; only pull queues are served."""
        if not hasattr(self, "_queue_config"):
            config = Queue(self.kwargs["queue"]).config
            if not config.is_pull:
                raise InvalidQueueModeError(
                    f"Queue {config.name!r} is a push queue; the API serves pull queues only"
                )
            self._queue_config = config
        return self._queue_config

    @property
    def queue(self) -> Queue:
        return Queue(self.get_queue_config().name)

    def validated(self, serializer_class: type, data: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def _queue_data(config: QueueConfig) -> dict[str, Any]:
    statistics = Queue(config.name).fetch_statistics()
    oldest = statistics.oldest_eta_usec
    return {
        "name": config.name,
        "mode": config.mode,
        "max_leases": (
            config.retry_parameters.task_retry_limit if config.retry_parameters else None
        ),
        "paused": statistics.paused,
        "statistics": {
            "tasks": statistics.tasks,
            "oldest_eta": (
                datetime.datetime.fromtimestamp(oldest / 1_000_000, datetime.UTC)
                if oldest is not None
                else None
            ),
            "leased": statistics.leased,
            "leased_last_minute": statistics.executed_last_minute,
            "leased_last_hour": statistics.executed_last_hour,
        },
    }


class QueueListView(QueueAPIView):
    """`GET queues/`: the pull queues whose acl names the caller, or all with a permission."""

    @document(
        operation_id="queues_list",
        summary="The pull queues the caller may see, with statistics",
        responses={200: serializers.QueueSerializer(many=True), **_errors(401)},
    )
    def get(self, request: Request) -> Response:
        configs = [
            config
            for config in all_queue_configs().values()
            if config.is_pull and may_see(request.user, config)
        ]
        data = [_queue_data(config) for config in sorted(configs, key=lambda c: c.name)]
        return Response(serializers.QueueSerializer(data, many=True).data)


class QueueDetailView(QueueAPIView):
    """`GET queues/<queue>/`: mode, max leases, paused, and statistics."""

    @document(
        operation_id="queues_get",
        path=[_QUEUE],
        summary="One pull queue: its configuration for workers and its statistics",
        responses={200: serializers.QueueSerializer, **_errors(*_READ_ERRORS)},
    )
    def get(self, request: Request, queue: str) -> Response:
        return Response(serializers.QueueSerializer(_queue_data(self.get_queue_config())).data)


def _encode_cursor(position: tuple[datetime.datetime, str]) -> str:
    eta, name = position
    raw = json.dumps([eta.isoformat(), name]).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        eta_text, name = json.loads(raw)
        eta = parse_datetime(eta_text)
        if eta is None or eta.tzinfo is None or not isinstance(name, str):
            raise ValueError(cursor)
        Task(b"", name=name, method="PULL")  # a cursor names a task: no NUL or other oddity
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, InvalidTaskNameError):
        raise ValidationError({"cursor": ["Invalid cursor."]}) from None
    return eta, name


class TaskListView(QueueAPIView):
    """`GET queues/<queue>/tasks/` (by ETA, `tag` filter, cursor pages) and `POST` (insert)."""

    queue_rights = {"GET": "view", "POST": "insert"}

    @document(
        operation_id="tasks_list",
        path=[_QUEUE],
        summary="Tasks of a pull queue by ETA, without payloads",
        parameters=[serializers.TaskListQuerySerializer],
        responses={200: serializers.TaskPageSerializer, **_errors(*_READ_ERRORS)},
    )
    def get(self, request: Request, queue: str) -> Response:
        query = self.validated(serializers.TaskListQuerySerializer, request.query_params)
        after = _decode_cursor(query["cursor"]) if "cursor" in query else None
        limit = query["limit"]
        # One task more than asked for says whether there is a next page.
        tasks = inspect.list_tasks(
            self.queue.name, tag=query.get("tag", inspect.ANY_TAG), after=after, limit=limit + 1
        )
        next_url = None
        if len(tasks) > limit:
            tasks = tasks[:limit]
            url = request.build_absolute_uri()
            next_url = replace_query_param(url, "cursor", _encode_cursor(tasks[-1].position))
        data = {"next": next_url, "results": tasks}
        return Response(serializers.TaskPageSerializer(data).data)

    @document(
        operation_id="tasks_insert",
        path=[_QUEUE],
        summary="Insert a pull task",
        request=serializers.InsertSerializer,
        responses={
            201: serializers.TaskWithPayloadSerializer,
            **_errors(*_WRITE_ERRORS, 409, 413),
        },
    )
    def post(self, request: Request, queue: str) -> Response:
        data = self.validated(serializers.InsertSerializer, request.data)
        options = {key: data[key] for key in ("name", "tag", "eta", "countdown") if key in data}
        payload = data["payload_base64"]
        # The limit is the payload's, as documented: the Python API's counts the method too.
        if len(payload) > MAX_PULL_TASK_SIZE_BYTES:
            raise TaskTooLargeError(
                f"The payload is {len(payload)} bytes, over the limit of "
                f"{MAX_PULL_TASK_SIZE_BYTES} bytes (1 MiB)"
            )
        if len(data.get("tag") or "") > MAX_TAG_LENGTH:
            raise InvalidTagError(f"Tag must be at most {MAX_TAG_LENGTH} characters")
        try:
            task = Task(payload, method="PULL", _size_check=False, **options)
        except OverflowError as e:  # a countdown beyond the datetime range
            raise InvalidEtaError("The ETA is out of range") from e
        if task.eta < EARLIEST_ETA:
            # Before any real task, and before the range of some databases' DATETIME.
            raise InvalidEtaError(f"The ETA may not be before {EARLIEST_ETA.isoformat()}")
        task = self.queue.add(task)
        # Answer with what was inserted, not with a fresh read: a worker may lease the task
        # at once, and its lease (eta) is not the producer's business.
        enqueued_at = inspect.enqueued_times(self.queue.name, [task.name]).get(task.name)
        body = {
            "name": task.name,
            "payload": task.payload,
            "tag": task.tag,
            "eta": task.eta,
            "retry_count": 0,
            "enqueued_at": enqueued_at,
            "leased_at": None,
        }
        return Response(
            serializers.TaskWithPayloadSerializer(body).data, status=status.HTTP_201_CREATED
        )


class TaskDetailView(QueueAPIView):
    """`GET queues/<queue>/tasks/<name>/` with the payload, and `DELETE`."""

    queue_rights = {"GET": "view", "DELETE": "delete"}

    @document(
        operation_id="tasks_get",
        path=[_QUEUE, _NAME],
        summary="One task with its payload",
        responses={200: serializers.TaskWithPayloadSerializer, **_errors(*_READ_ERRORS)},
    )
    def get(self, request: Request, queue: str, name: str) -> Response:
        task = inspect.get_task(self.queue.name, name)
        return Response(serializers.TaskWithPayloadSerializer(task).data)

    @document(
        operation_id="tasks_delete",
        path=[_QUEUE, _NAME],
        summary="Delete a task",
        responses={204: None, **_errors(*_READ_ERRORS)},
    )
    def delete(self, request: Request, queue: str, name: str) -> Response:
        task = self.queue.delete_tasks_by_name(name)
        if not task.was_deleted:
            raise UnknownTaskError(f"No live task named {name!r} in queue {queue!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class LeaseView(QueueAPIView):
    """`POST queues/<queue>/lease/`: lease_tasks, or lease_tasks_by_tag; throttled per queue."""

    queue_rights = {"POST": "lease"}
    throttle_classes = [LeaseRateThrottle]

    @document(
        operation_id="tasks_lease",
        path=[_QUEUE],
        summary="Lease tasks (like lease_tasks, or lease_tasks_by_tag with group_by_tag)",
        request=serializers.LeaseRequestSerializer,
        responses={200: serializers.LeaseResponseSerializer, **_errors(*_WRITE_ERRORS, 429)},
    )
    def post(self, request: Request, queue: str) -> Response:
        data = self.validated(serializers.LeaseRequestSerializer, request.data)
        if data["group_by_tag"]:
            tasks = self.queue.lease_tasks_by_tag(
                data["lease_seconds"], data["max_tasks"], data.get("tag")
            )
        else:
            tasks = self.queue.lease_tasks(data["lease_seconds"], data["max_tasks"])
        items = [
            {
                "name": t.name,
                "payload": t.payload or b"",
                "tag": t.tag,
                "eta": t.eta,
                "retry_count": t.retry_count,
                "enqueued_at": t.enqueued_at,
            }
            for t in tasks
        ]
        return Response(serializers.LeaseResponseSerializer({"tasks": items}).data)


class ModifyLeaseView(QueueAPIView):
    """`POST queues/<queue>/tasks/<name>/lease/`: modify_task_lease on the lease `eta`."""

    queue_rights = {"POST": "lease"}

    @document(
        operation_id="tasks_modify_lease",
        path=[_QUEUE, _NAME],
        summary="Extend or release (lease_seconds 0) the lease held on a task",
        request=serializers.ModifyLeaseSerializer,
        responses={200: serializers.LeaseSerializer, **_errors(*_WRITE_ERRORS, 409)},
    )
    def post(self, request: Request, queue: str, name: str) -> Response:
        data = self.validated(serializers.ModifyLeaseSerializer, request.data)
        task = Task(b"", name=name, eta=data["eta"], method="PULL")
        self.queue.modify_task_lease(task, data["lease_seconds"])
        return Response(serializers.LeaseSerializer({"name": task.name, "eta": task.eta}).data)


class DeleteBatchView(QueueAPIView):
    """`POST queues/<queue>/delete/`: delete_tasks_by_name on up to 1,000 names."""

    queue_rights = {"POST": "delete"}

    @document(
        operation_id="tasks_delete_batch",
        path=[_QUEUE],
        summary="Delete up to 1,000 tasks by name",
        request=serializers.DeleteBatchSerializer,
        responses={200: serializers.DeleteBatchResultSerializer, **_errors(*_WRITE_ERRORS)},
    )
    def post(self, request: Request, queue: str) -> Response:
        data = self.validated(serializers.DeleteBatchSerializer, request.data)
        tasks = self.queue.delete_tasks_by_name(data["names"])
        result = {
            "deleted": [t.name for t in tasks if t.was_deleted],
            "not_deleted": [t.name for t in tasks if not t.was_deleted],
        }
        return Response(serializers.DeleteBatchResultSerializer(result).data)


class NotFoundView(QueueAPIView):
    """Every other path under the API's mount: a JSON 404, for any method."""

    permission_classes: list[Any] = []
    schema = None

    # DRF hands its views a Request where Django's View declares an HttpRequest; DRF's own
    # stubs ignore the same override on APIView, and each subclass's override meets it again.
    def http_method_not_allowed(  # type: ignore[override]
        self, request: Request, *args: Any, **kwargs: Any
    ) -> Any:
        raise NotFound()

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise NotFound()
