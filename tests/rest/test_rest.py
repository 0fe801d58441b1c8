"""The REST API, one class per row of its table: each call goes through the Python API."""
# ruff: noqa: F811  (pytest fixtures imported from rest_helpers are test arguments)

from __future__ import annotations

import base64
import datetime

import pytest
from django.utils.dateparse import parse_datetime

from django_taskqueue import inspect
from django_taskqueue.taskqueue import MAX_PULL_TASK_SIZE_BYTES, Queue

from ..conftest import FROZEN_AT
from .rest_helpers import (  # noqa: F401  (fixtures)
    ACL_QUEUE,
    API,
    _fresh_throttle,
    add_pull,
    admin,
    anonymous,
    b64,
    consumer,
    producer,
    stranger,
    url,
)

pytestmark = pytest.mark.django_db

SECOND = datetime.timedelta(seconds=1)


def at(text: str) -> datetime.datetime:
    value = parse_datetime(text)
    assert value is not None and value.tzinfo is not None, text
    return value


def error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]


class TestQueueList:
    def test_lists_pull_queues_the_caller_may_see(self, consumer, producer, stranger, admin):
        assert [q["name"] for q in consumer.get(url("queues")).json()] == [ACL_QUEUE]
        assert [q["name"] for q in producer.get(url("queues")).json()] == [ACL_QUEUE]
        assert stranger.get(url("queues")).json() == []
        # Push queues are never listed, even for a service account.
        assert [q["name"] for q in admin.get(url("queues")).json()] == [
            "pull-acl",
            "pull-limited",
            "pull-queue",
        ]

    def test_each_with_mode_and_statistics(self, consumer, frozen_clock):
        add_pull(name="t1")
        [queue] = consumer.get(url("queues")).json()
        assert queue["mode"] == "pull"
        assert queue["statistics"]["tasks"] == 1
        assert at(queue["statistics"]["oldest_eta"]) == FROZEN_AT


class TestQueueDetail:
    def test_configuration_and_statistics(self, admin, frozen_clock):
        add_pull("pull-limited", name="a", eta=FROZEN_AT - 5 * SECOND)
        add_pull("pull-limited", name="b")
        Queue("pull-limited").lease_tasks(60, 1)
        response = admin.get(url("queues", "pull-limited"))
        assert response.status_code == 200
        body = response.json()
        assert body["name"] == "pull-limited"
        assert body["mode"] == "pull"
        assert body["max_leases"] == 2
        assert body["paused"] is False
        stats = body["statistics"]
        assert stats["tasks"] == 2
        assert stats["leased"] == 1
        assert stats["leased_last_minute"] == 1
        assert stats["leased_last_hour"] == 1
        # The leased task's eta is its lease expiry; the oldest is now the other one.
        assert at(stats["oldest_eta"]) == FROZEN_AT
        frozen_clock.advance(120)
        stats = admin.get(url("queues", "pull-limited")).json()["statistics"]
        assert (stats["leased_last_minute"], stats["leased_last_hour"]) == (0, 1)

    def test_no_limit_is_null_and_empty_queue(self, admin):
        body = admin.get(url("queues", "pull-queue")).json()
        assert body["max_leases"] is None
        assert body["statistics"]["tasks"] == 0
        assert body["statistics"]["oldest_eta"] is None

    def test_paused(self, admin):
        Queue("pull-queue").pause()
        assert admin.get(url("queues", "pull-queue")).json()["paused"] is True

    def test_push_queue_is_not_served(self, admin):
        error(admin.get(url("queues", "default")), 400, "invalid_queue_mode")

    def test_unknown_queue(self, admin):
        error(admin.get(url("queues", "no-such-queue")), 404, "unknown_queue")

    def test_invalid_queue_name(self, admin):
        error(admin.get(url("queues", "bad_name!")), 400, "invalid_queue_name")


class TestTaskList:
    def test_ordered_by_eta_without_payload(self, consumer, frozen_clock):
        add_pull(name="late", eta=FROZEN_AT + 10 * SECOND)
        add_pull(name="early", eta=FROZEN_AT - 10 * SECOND, tag="t")
        response = consumer.get(url("queues", ACL_QUEUE, "tasks"))
        assert response.status_code == 200
        body = response.json()
        assert body["next"] is None
        assert [t["name"] for t in body["results"]] == ["early", "late"]
        first = body["results"][0]
        assert "payload_base64" not in first
        assert first["tag"] == "t"
        assert at(first["eta"]) == FROZEN_AT - 10 * SECOND
        assert at(first["enqueued_at"]) == FROZEN_AT
        assert first["retry_count"] == 0
        assert first["leased_at"] is None

    def test_paginated(self, consumer, frozen_clock):
        for i in range(5):
            add_pull(name=f"t{i}", eta=FROZEN_AT - (10 - i) * SECOND)
        names, page = [], url("queues", ACL_QUEUE, "tasks") + "?limit=2"
        while page:
            body = consumer.get(page).json()
            names += [t["name"] for t in body["results"]]
            page = body["next"]
            assert len(body["results"]) <= 2
        assert names == ["t0", "t1", "t2", "t3", "t4"]

    def test_filter_by_tag(self, consumer):
        add_pull(name="a", tag="red")
        add_pull(name="b", tag="blue")
        body = consumer.get(url("queues", ACL_QUEUE, "tasks"), {"tag": "red"}).json()
        assert [t["name"] for t in body["results"]] == ["a"]

    def test_bad_cursor_and_limit(self, consumer):
        tasks = url("queues", ACL_QUEUE, "tasks")
        error(consumer.get(tasks, {"cursor": "garbage!"}), 400, "invalid")
        nul_cursor = base64.urlsafe_b64encode(b'["2025-01-15T12:00:00+00:00", "a\\u0000"]')
        error(consumer.get(tasks, {"cursor": nul_cursor.decode()}), 400, "invalid")
        response = consumer.get(tasks, {"limit": 0})
        error(response, 400, "invalid")
        assert "limit" in response.json()["fields"]


class TestInsert:
    def test_created(self, producer, frozen_clock):
        response = producer.post(
            url("queues", ACL_QUEUE, "tasks"),
            {"payload_base64": b64(b"\x00\xffhello"), "name": "job-1", "tag": "x"},
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["name"] == "job-1"
        assert body["payload_base64"] == b64(b"\x00\xffhello")
        assert body["tag"] == "x"
        assert at(body["eta"]) == FROZEN_AT
        assert at(body["enqueued_at"]) == FROZEN_AT
        assert body["retry_count"] == 0
        assert inspect.get_task(ACL_QUEUE, "job-1").payload == b"\x00\xffhello"

    def test_random_name_and_countdown(self, producer, frozen_clock):
        body = producer.post(
            url("queues", ACL_QUEUE, "tasks"),
            {"payload_base64": b64(b"x"), "countdown": 30},
            format="json",
        ).json()
        assert body["name"]
        assert at(body["eta"]) == FROZEN_AT + 30 * SECOND
        assert Queue(ACL_QUEUE).lease_tasks(10, 10) == []

    def test_eta(self, producer, frozen_clock):
        eta = (FROZEN_AT + 60 * SECOND).isoformat()
        body = producer.post(
            url("queues", ACL_QUEUE, "tasks"), {"payload_base64": "eA", "eta": eta}, format="json"
        ).json()
        assert at(body["eta"]) == FROZEN_AT + 60 * SECOND

    def test_times_are_utc(self, producer, frozen_clock):
        # Whatever TIME_ZONE says; a time without an offset is read as UTC.
        body = producer.post(
            url("queues", ACL_QUEUE, "tasks"),
            {"payload_base64": "eA", "eta": "2025-01-15T12:00:10"},
            format="json",
        ).json()
        assert body["eta"] == "2025-01-15T12:00:10Z"
        assert body["enqueued_at"] == "2025-01-15T12:00:00Z"

    def test_url_safe_base64_without_padding(self, producer):
        body = producer.post(
            url("queues", ACL_QUEUE, "tasks"), {"payload_base64": "-_8"}, format="json"
        ).json()
        assert inspect.get_task(ACL_QUEUE, body["name"]).payload == b"\xfb\xff"

    def test_name_conflicts(self, producer, frozen_clock):
        tasks = url("queues", ACL_QUEUE, "tasks")
        task = {"payload_base64": "eA==", "name": "once"}
        assert producer.post(tasks, task, format="json").status_code == 201
        error(producer.post(tasks, task, format="json"), 409, "task_already_exists")
        Queue(ACL_QUEUE).delete_tasks_by_name("once")
        error(producer.post(tasks, task, format="json"), 409, "tombstoned_task")

    def test_too_large(self, producer):
        payload = b"x" * (MAX_PULL_TASK_SIZE_BYTES + 1)
        response = producer.post(
            url("queues", ACL_QUEUE, "tasks"), {"payload_base64": b64(payload)}, format="json"
        )
        error(response, 413, "task_too_large")

    def test_far_too_large(self, producer):
        # Larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) as well.
        payload = b"x" * (3 * MAX_PULL_TASK_SIZE_BYTES)
        response = producer.post(
            url("queues", ACL_QUEUE, "tasks"), {"payload_base64": b64(payload)}, format="json"
        )
        error(response, 413, "task_too_large")
        detail = response.json()["detail"]
        # The limit a client can act on, in words; not the name of a server setting.
        assert "1 MiB" in detail and "DATA_UPLOAD_MAX_MEMORY_SIZE" not in detail

    def test_unknown_field_is_refused(self, producer):
        tasks = url("queues", ACL_QUEUE, "tasks")
        response = producer.post(tasks, {"payload_base64": "eA==", "tagg": "x"}, format="json")
        error(response, 400, "unknown_field")
        assert list(response.json()["fields"]) == ["tagg"]
        assert "tagg" in response.json()["detail"]
        assert not list(inspect.list_tasks(ACL_QUEUE))

    def test_unknown_field_in_a_lease_is_refused(self, consumer):
        response = consumer.post(
            url("queues", ACL_QUEUE, "lease"),
            {"lease_seconds": 1, "max_tasks": 1, "group_by_tags": True},
            format="json",
        )
        error(response, 400, "unknown_field")

    @pytest.mark.parametrize(
        "body, code",
        [
            ({}, "invalid"),
            ({"payload_base64": "not base64!"}, "invalid"),
            ({"payload_base64": "eA", "name": "bad name"}, "invalid_task_name"),
            (
                {"payload_base64": "eA", "countdown": 5, "eta": "2025-01-15T12:00:00Z"},
                "invalid_task",
            ),
            ({"payload_base64": "eA", "countdown": 40 * 86400}, "invalid_eta"),
            ({"payload_base64": "eA", "tag": "t" * 501}, "invalid_tag"),
            ({"payload_base64": "eA", "countdown": -2.4e226}, "invalid_eta"),
            ({"payload_base64": "eA", "eta": "1969-12-31T23:59:59Z"}, "invalid_eta"),
            ({"payload_base64": "eA", "eta": "0001-01-01T00:00:00+05:00"}, "invalid"),
            ({"payload_base64": "eA", "countdown": "NaN"}, "invalid"),
        ],
    )
    def test_bad_input(self, producer, body, code):
        error(producer.post(url("queues", ACL_QUEUE, "tasks"), body, format="json"), 400, code)

    def test_not_json(self, producer):
        tasks = url("queues", ACL_QUEUE, "tasks")
        error(producer.post(tasks, "{oops", content_type="application/json"), 400, "parse_error")
        error(producer.post(tasks, {"payload_base64": "eA"}), 415, "unsupported_media_type")

    def test_push_queue(self, admin):
        response = admin.post(
            url("queues", "default", "tasks"), {"payload_base64": "eA"}, format="json"
        )
        error(response, 400, "invalid_queue_mode")


class TestGetTask:
    def test_with_payload(self, consumer, frozen_clock):
        add_pull(name="t1", payload=b"\x01\x02", tag="g")
        response = consumer.get(url("queues", ACL_QUEUE, "tasks", "t1"))
        assert response.status_code == 200
        body = response.json()
        assert body["payload_base64"] == b64(b"\x01\x02")
        assert body["name"] == "t1"
        assert body["tag"] == "g"
        assert at(body["eta"]) == FROZEN_AT

    def test_unknown(self, consumer):
        error(consumer.get(url("queues", ACL_QUEUE, "tasks", "nope")), 404, "unknown_task")

    def test_unknown_queue(self, admin):
        error(admin.get(url("queues", "nope", "tasks", "t1")), 404, "unknown_queue")

    def test_malformed_name(self, consumer):
        # %00 would reach PostgreSQL as a NUL character: refused as the Python API refuses it.
        error(consumer.get(url("queues", ACL_QUEUE, "tasks", "a%00b")), 400, "invalid_task_name")
        error(consumer.delete(url("queues", ACL_QUEUE, "tasks", "a%00b")), 400, "invalid_task_name")


class TestDeleteTask:
    def test_deleted_then_unknown(self, consumer):
        add_pull(name="t1")
        task = url("queues", ACL_QUEUE, "tasks", "t1")
        response = consumer.delete(task)
        assert response.status_code == 204
        assert response.content == b""
        error(consumer.delete(task), 404, "unknown_task")
        error(consumer.get(task), 404, "unknown_task")


class TestLease:
    def lease(self, client, queue=ACL_QUEUE, **body):
        return client.post(url("queues", queue, "lease"), body, format="json")

    def test_leases_with_every_field(self, consumer, frozen_clock):
        add_pull(name="t1", payload=b"data", tag="a", eta=FROZEN_AT - SECOND)
        add_pull(name="t2", payload=b"more")
        response = self.lease(consumer, lease_seconds=30, max_tasks=10)
        assert response.status_code == 200
        tasks = response.json()["tasks"]
        assert [t["name"] for t in tasks] == ["t1", "t2"]
        first = tasks[0]
        assert set(first) == {"name", "payload_base64", "tag", "eta", "retry_count", "enqueued_at"}
        assert first["payload_base64"] == b64(b"data")
        assert first["tag"] == "a"
        assert at(first["eta"]) == FROZEN_AT + 30 * SECOND
        assert first["retry_count"] == 1
        assert at(first["enqueued_at"]) == FROZEN_AT
        assert self.lease(consumer, lease_seconds=30, max_tasks=10).json() == {"tasks": []}

    def test_max_tasks(self, consumer):
        for i in range(3):
            add_pull(name=f"t{i}")
        assert len(self.lease(consumer, lease_seconds=30, max_tasks=2).json()["tasks"]) == 2

    def test_by_tag(self, consumer, frozen_clock):
        add_pull(name="old", tag="a", eta=FROZEN_AT - 3 * SECOND)
        add_pull(name="b1", tag="b", eta=FROZEN_AT - 2 * SECOND)
        add_pull(name="a2", tag="a", eta=FROZEN_AT - SECOND)
        body = self.lease(consumer, lease_seconds=30, max_tasks=10, group_by_tag=True, tag="b")
        assert [t["name"] for t in body.json()["tasks"]] == ["b1"]
        # Without a tag: the oldest task's tag.
        body = self.lease(consumer, lease_seconds=30, max_tasks=10, group_by_tag=True)
        assert [t["name"] for t in body.json()["tasks"]] == ["old", "a2"]

    def test_tag_needs_group_by_tag(self, consumer):
        response = self.lease(consumer, lease_seconds=30, max_tasks=1, tag="a")
        error(response, 400, "invalid")
        assert "tag" in response.json()["fields"]

    @pytest.mark.parametrize(
        "body, code",
        [
            ({"lease_seconds": -1, "max_tasks": 1}, "invalid_lease_time"),
            ({"lease_seconds": 7 * 86400 + 1, "max_tasks": 1}, "invalid_lease_time"),
            ({"lease_seconds": 10, "max_tasks": 0}, "invalid_max_tasks"),
            ({"lease_seconds": 10, "max_tasks": 1001}, "invalid_max_tasks"),
            ({"lease_seconds": 10}, "invalid"),
            ({"lease_seconds": "ten", "max_tasks": 1}, "invalid"),
        ],
    )
    def test_bad_input(self, consumer, body, code):
        error(self.lease(consumer, **body), 400, code)

    def test_push_queue(self, admin):
        error(self.lease(admin, "default", lease_seconds=1, max_tasks=1), 400, "invalid_queue_mode")

    def test_unknown_queue(self, admin):
        error(self.lease(admin, "nope", lease_seconds=1, max_tasks=1), 404, "unknown_queue")

    def test_paused_queue_leases_nothing(self, consumer):
        add_pull(name="t1")
        Queue(ACL_QUEUE).pause()
        assert self.lease(consumer, lease_seconds=30, max_tasks=1).json() == {"tasks": []}

    def test_lease_limit_of_the_queue(self, admin, frozen_clock):
        add_pull("pull-limited", name="t1")
        for count in (1, 2):
            [task] = self.lease(admin, "pull-limited", lease_seconds=1, max_tasks=1).json()["tasks"]
            assert task["retry_count"] == count
            frozen_clock.advance(1)
        # task_retry_limit 2: the third lease drops the task instead.
        assert self.lease(admin, "pull-limited", lease_seconds=1, max_tasks=1).json()["tasks"] == []
        error(admin.get(url("queues", "pull-limited", "tasks", "t1")), 404, "unknown_task")


class TestThrottle:
    def lease(self, client, queue=ACL_QUEUE):
        return client.post(
            url("queues", queue, "lease"), {"lease_seconds": 1, "max_tasks": 1}, format="json"
        )

    def test_ten_per_second_per_queue(self, consumer, admin, frozen_clock):
        for _ in range(10):
            assert self.lease(consumer).status_code == 200
        response = self.lease(consumer)
        error(response, 429, "throttled")
        assert int(response["Retry-After"]) >= 1
        # Per queue, not per user: another queue is not affected, another user is.
        assert self.lease(admin, "pull-queue").status_code == 200
        error(self.lease(admin), 429, "throttled")
        frozen_clock.advance(1)
        assert self.lease(consumer).status_code == 200

    def test_only_leases_are_throttled(self, consumer, frozen_clock):
        for _ in range(12):
            assert consumer.get(url("queues", ACL_QUEUE)).status_code == 200

    def test_configurable(self, consumer, frozen_clock, settings):
        settings.TASKQUEUE = {**settings.TASKQUEUE, "REST_LEASE_RATE": "2/m"}
        assert self.lease(consumer).status_code == 200
        assert self.lease(consumer).status_code == 200
        response = self.lease(consumer)
        error(response, 429, "throttled")
        assert int(response["Retry-After"]) == 60
        settings.TASKQUEUE = {**settings.TASKQUEUE, "REST_LEASE_RATE": None}
        for _ in range(20):
            assert self.lease(consumer).status_code == 200


class TestModifyLease:
    def lease_one(self, client, seconds=30):
        [task] = client.post(
            url("queues", ACL_QUEUE, "lease"),
            {"lease_seconds": seconds, "max_tasks": 1},
            format="json",
        ).json()["tasks"]
        return task

    def modify(self, client, name, eta, seconds):
        return client.post(
            url("queues", ACL_QUEUE, "tasks", name, "lease"),
            {"lease_seconds": seconds, "eta": eta},
            format="json",
        )

    def test_extend(self, consumer, frozen_clock):
        add_pull(name="t1")
        task = self.lease_one(consumer)
        frozen_clock.advance(10)
        response = self.modify(consumer, "t1", task["eta"], 60)
        assert response.status_code == 200
        body = response.json()
        assert body["name"] == "t1"
        assert at(body["eta"]) == FROZEN_AT + 70 * SECOND
        # The new eta is the lease now; the old one is stale.
        assert self.modify(consumer, "t1", body["eta"], 60).status_code == 200
        error(self.modify(consumer, "t1", task["eta"], 60), 409, "task_lease_expired")

    def test_zero_releases(self, consumer, frozen_clock):
        add_pull(name="t1")
        task = self.lease_one(consumer)
        assert self.modify(consumer, "t1", task["eta"], 0).status_code == 200
        again = self.lease_one(consumer)
        assert again["name"] == "t1"
        # A release does not count as a lease: this is the second.
        assert again["retry_count"] == 2

    def test_expired_lease(self, consumer, frozen_clock):
        add_pull(name="t1")
        task = self.lease_one(consumer, seconds=5)
        frozen_clock.advance(6)
        error(self.modify(consumer, "t1", task["eta"], 60), 409, "task_lease_expired")

    def test_deleted_and_unknown(self, consumer, frozen_clock):
        add_pull(name="t1")
        task = self.lease_one(consumer)
        Queue(ACL_QUEUE).delete_tasks_by_name("t1")
        error(self.modify(consumer, "t1", task["eta"], 60), 409, "tombstoned_task")
        error(self.modify(consumer, "nope", task["eta"], 60), 404, "unknown_task")

    def test_paused_queue(self, consumer, frozen_clock):
        add_pull(name="t1")
        task = self.lease_one(consumer)
        Queue(ACL_QUEUE).pause()
        error(self.modify(consumer, "t1", task["eta"], 60), 409, "queue_paused")

    def test_bad_input(self, consumer, frozen_clock):
        add_pull(name="t1")
        task = self.lease_one(consumer)
        error(self.modify(consumer, "t1", task["eta"], -1), 400, "invalid_lease_time")
        error(self.modify(consumer, "t1", "yesterday", 10), 400, "invalid")


class TestDeleteBatch:
    def delete(self, client, names, queue=ACL_QUEUE):
        return client.post(url("queues", queue, "delete"), {"names": names}, format="json")

    def test_answers_which_were_deleted(self, consumer):
        add_pull(name="a")
        add_pull(name="b")
        add_pull(name="gone")
        Queue(ACL_QUEUE).delete_tasks_by_name("gone")
        response = self.delete(consumer, ["a", "b", "gone", "never"])
        assert response.status_code == 200
        assert response.json() == {"deleted": ["a", "b"], "not_deleted": ["gone", "never"]}
        assert inspect.list_tasks(ACL_QUEUE) == []

    def test_a_thousand_names_at_most(self, consumer):
        names = [f"t{i}" for i in range(1000)]
        assert self.delete(consumer, names).status_code == 200
        response = self.delete(consumer, [*names, "one-more"])
        error(response, 400, "invalid")
        assert "names" in response.json()["fields"]

    def test_bad_names(self, consumer):
        error(self.delete(consumer, []), 400, "invalid")
        error(self.delete(consumer, ["a", "a"]), 400, "duplicate_task_name")
        error(self.delete(consumer, ["bad name"]), 400, "invalid_task_name")


class TestSchema:
    def test_openapi_schema(self, anonymous):
        response = anonymous.get(url("schema"), {"format": "json"})
        assert response.status_code == 200
        schema = response.json()
        assert schema["openapi"].startswith("3.")
        assert set(schema["paths"]) == {
            "/taskqueue/api/queues/",
            "/taskqueue/api/queues/{queue}/",
            "/taskqueue/api/queues/{queue}/tasks/",
            "/taskqueue/api/queues/{queue}/tasks/{name}/",
            "/taskqueue/api/queues/{queue}/lease/",
            "/taskqueue/api/queues/{queue}/tasks/{name}/lease/",
            "/taskqueue/api/queues/{queue}/delete/",
        }
        lease = schema["paths"]["/taskqueue/api/queues/{queue}/lease/"]["post"]
        assert {"200", "400", "401", "403", "404", "429"} <= set(lease["responses"])
        # App Engine's ranges are stated, so clients (and fuzzers) know them.
        request = schema["components"]["schemas"]["LeaseRequestRequest"]["properties"]
        assert (request["lease_seconds"]["minimum"], request["lease_seconds"]["maximum"]) == (
            0,
            604800,
        )
        assert (request["max_tasks"]["minimum"], request["max_tasks"]["maximum"]) == (1, 1000)

    def test_yaml_by_default(self, anonymous):
        response = anonymous.get(url("schema"))
        assert response.status_code == 200
        assert b"openapi: 3" in response.content

    def test_docs_page(self, anonymous):
        response = anonymous.get(url("schema", "docs"))
        assert response.status_code == 200
        assert b"/taskqueue/api/schema/" in response.content
        # Redoc's script comes from the API itself, not from a CDN.
        assert b'<script src="/taskqueue/api/schema/docs/redoc.js">' in response.content
        script = anonymous.get(API + "schema/docs/redoc.js")
        assert script.status_code == 200
        assert script["Content-Type"] == "text/javascript"
        assert b"Redoc" in b"".join(script.streaming_content)


class TestErrorsAreJson:
    def test_unknown_path_inside_the_api(self, anonymous, consumer):
        error(anonymous.get(API + "nothing/here/"), 404, "not_found")
        error(consumer.post(API + "queues"), 404, "not_found")

    def test_method_not_allowed(self, consumer):
        error(consumer.put(url("queues", ACL_QUEUE), {}, format="json"), 405, "method_not_allowed")

    def test_not_acceptable(self, consumer):
        response = consumer.get(url("queues"), HTTP_ACCEPT="text/html")
        error(response, 406, "not_acceptable")


class FailingAuthentication:
    """An authentication class with a set-up error, as TokenAuthentication without its app."""

    def authenticate(self, request):
        raise AttributeError("type object 'Token' has no attribute 'DoesNotExist'")

    def authenticate_header(self, request):
        return "Token"


def test_an_unforeseen_error_is_still_json(client, settings, caplog):
    settings.TASKQUEUE = {
        **settings.TASKQUEUE,
        "REST_AUTHENTICATION_CLASSES": ["tests.rest.test_rest.FailingAuthentication"],
    }
    with caplog.at_level("ERROR", logger="django_taskqueue"):
        response = client.get(url("queues"), headers={"Authorization": "Token abc"})
    error(response, 500, "server_error")
    assert any("event=rest_error" in r.getMessage() for r in caplog.records)


def test_the_schema_says_request_bodies_are_closed(client):
    schemas = client.get(API + "schema/?format=json").json()["components"]["schemas"]
    for name in ("InsertRequest", "LeaseRequestRequest", "ModifyLeaseRequest"):
        assert schemas[name]["additionalProperties"] is False
    assert "additionalProperties" not in schemas["Task"]  # responses may grow
