"""JSON shapes of the REST API: snake_case names, ISO 8601 times, payloads in base64."""

from __future__ import annotations

import base64
import binascii
import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..limits import MAX_LEASE_SECONDS, MAX_TASKS_PER_LEASE

#: The most names one batch delete takes (App Engine's batch limit).
MAX_NAMES_PER_DELETE = 1000

#: The largest page of a task listing.
MAX_PAGE_SIZE = 1000


@extend_schema_field({"type": "string", "format": "byte"})
class Base64Field(serializers.Field):
    """Bytes as base64 text; reads the standard and the URL-safe alphabet, padded or not."""

    default_error_messages = {"invalid": "Not valid base64."}

    def to_representation(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    def to_internal_value(self, data: Any) -> bytes:
        if not isinstance(data, str):
            self.fail("invalid")
        text = "".join(data.split()).replace("-", "+").replace("_", "/")
        text += "=" * (-len(text) % 4)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.fail("invalid")


class RequestSerializer(serializers.Serializer):
    """A request body: a key that is not one of its fields is refused (`unknown_field`).

    A misspelt optional field ("tagg") would otherwise be dropped without a word, and the
    task added without what its sender meant it to have.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                known = ", ".join(self.fields)
                raise serializers.ValidationError(
                    {
                        key: [
                            serializers.ErrorDetail(
                                f"Unknown field; the fields are {known}.", code="unknown_field"
                            )
                        ]
                        for key in unknown
                    }
                )
        return super().to_internal_value(data)


class UTCDateTimeField(serializers.DateTimeField):
    """ISO 8601 in UTC ("...Z") out; any offset in, and a time without one is UTC."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(default_timezone=datetime.UTC, **kwargs)


@extend_schema_field(
    {"type": "number", "format": "double", "minimum": 0, "maximum": MAX_LEASE_SECONDS}
)
class LeaseSecondsField(serializers.FloatField):
    """A lease's length in seconds. The range is App Engine's: the view checks it and answers
    `invalid_lease_time` outside it; the schema states it."""


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_TASKS_PER_LEASE})
class MaxTasksField(serializers.IntegerField):
    """Tasks per lease call; outside the range the view answers `invalid_max_tasks`."""


class ErrorSerializer(serializers.Serializer):
    """Every error response."""

    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `unknown_queue`.")
    detail = serializers.CharField(help_text="A human-readable message.")
    # DRF's metaclass takes declared fields off the class, so this does not replace the
    # `Serializer.fields` property the stubs see it assigned to.
    fields = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Validation errors only: field name to messages."
    )


class QueueStatisticsSerializer(serializers.Serializer):
    tasks = serializers.IntegerField(help_text="Live tasks: waiting or leased.")
    oldest_eta = UTCDateTimeField(
        allow_null=True, help_text="The earliest ETA of a task (a lease expiry if leased)."
    )
    leased = serializers.IntegerField(help_text="Tasks under a lease now.")
    leased_last_minute = serializers.IntegerField()
    leased_last_hour = serializers.IntegerField()


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    mode = serializers.ChoiceField(choices=["pull"])
    max_leases = serializers.IntegerField(
        allow_null=True,
        help_text="The queue's task_retry_limit: a task is dropped instead of leased more "
        "often. Null: no limit.",
    )
    paused = serializers.BooleanField()
    statistics = QueueStatisticsSerializer()


class TaskSerializer(serializers.Serializer):
    """A task as listed: no payload."""

    name = serializers.CharField()
    tag = serializers.CharField(allow_null=True)
    eta = UTCDateTimeField(help_text="When the task is due; if leased, lease expiry.")
    retry_count = serializers.IntegerField(help_text="Leases taken so far.")
    enqueued_at = UTCDateTimeField()
    leased_at = UTCDateTimeField(allow_null=True)


class TaskWithPayloadSerializer(TaskSerializer):
    payload_base64 = Base64Field(source="payload")


class TaskPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")
    results = TaskSerializer(many=True)


class TaskListQuerySerializer(serializers.Serializer):
    tag = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Only tasks with this tag.",
    )
    limit = serializers.IntegerField(
        required=False, default=100, min_value=1, max_value=MAX_PAGE_SIZE
    )
    cursor = serializers.CharField(required=False, help_text="From `next` of the previous page.")


class InsertSerializer(RequestSerializer):
    payload_base64 = Base64Field()
    name = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text="Unique in the queue; a random one when omitted.",
    )
    tag = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    eta = UTCDateTimeField(required=False, help_text="When the task becomes leasable.")
    countdown = serializers.FloatField(
        required=False, help_text="Seconds from now until the task becomes leasable."
    )


class LeaseRequestSerializer(RequestSerializer):
    lease_seconds = LeaseSecondsField(help_text="0 to 604800.")
    max_tasks = MaxTasksField(help_text="1 to 1000.")
    group_by_tag = serializers.BooleanField(
        default=False, help_text="Lease only tasks that share one tag."
    )
    tag = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        trim_whitespace=False,
        help_text="With group_by_tag: the tag; omitted, the tag of the oldest task.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("tag") is not None and not attrs["group_by_tag"]:
            raise serializers.ValidationError({"tag": ["tag needs group_by_tag: true."]})
        return attrs


class LeasedTaskSerializer(serializers.Serializer):
    name = serializers.CharField()
    payload_base64 = Base64Field(source="payload")
    tag = serializers.CharField(allow_null=True)
    eta = UTCDateTimeField(help_text="The lease expiry; it identifies the lease.")
    retry_count = serializers.IntegerField(help_text="Leases so far, this one included.")
    enqueued_at = UTCDateTimeField(allow_null=True)


class LeaseResponseSerializer(serializers.Serializer):
    tasks = LeasedTaskSerializer(many=True)


class ModifyLeaseSerializer(RequestSerializer):
    lease_seconds = LeaseSecondsField(help_text="From now, 0 to 604800; 0 releases the task.")
    eta = UTCDateTimeField(help_text="The `eta` of the lease held, as leased.")


class LeaseSerializer(serializers.Serializer):
    name = serializers.CharField()
    eta = UTCDateTimeField(help_text="The new lease expiry.")


class DeleteBatchSerializer(RequestSerializer):
    names = serializers.ListField(
        child=serializers.CharField(), min_length=1, max_length=MAX_NAMES_PER_DELETE
    )


class DeleteBatchResultSerializer(serializers.Serializer):
    deleted = serializers.ListField(child=serializers.CharField())
    not_deleted = serializers.ListField(
        child=serializers.CharField(), help_text="Unknown, already deleted or finished."
    )
