"""Bad input never makes the REST API answer 500: size and depth limits, malformed JSON.

Every answer here is JSON with a stable `code`, from a caller with every right on the queue.
"""

from __future__ import annotations

import pytest

from django_taskqueue.rest.parsers import MAX_BODY_BYTES, MAX_DEPTH, json_depth
from django_taskqueue.taskqueue import MAX_PULL_TASK_SIZE_BYTES

from ..rest.rest_helpers import ACL_QUEUE, add_pull, admin, b64, url  # noqa: F401

pytestmark = pytest.mark.django_db

NESTED_4KB = b"[" * 2048 + b"]" * 2048
WRITES = [
    ("post", ("queues", ACL_QUEUE, "tasks")),
    ("post", ("queues", ACL_QUEUE, "lease")),
    ("post", ("queues", ACL_QUEUE, "delete")),
    ("post", ("queues", ACL_QUEUE, "tasks", "t", "lease")),
]


def assert_error(response, status, code):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code


@pytest.mark.parametrize("method, parts", WRITES, ids=["insert", "lease", "delete", "modify"])
@pytest.mark.parametrize(
    "body",
    [NESTED_4KB, b'{"a":' * 1000 + b"1" + b"}" * 1000, b"[" * 100_000],
    ids=["arrays-4KB", "objects", "unclosed-100KB"],
)
def test_deep_nesting_is_a_400(admin, method, parts, body):  # noqa: F811
    response = getattr(admin, method)(url(*parts), body, content_type="application/json")
    assert_error(response, 400, "json_too_deep")


@pytest.mark.parametrize("method, parts", WRITES, ids=["insert", "lease", "delete", "modify"])
@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not utf-8",
        b"NaN",
        b"1e999999",
        b"9" * 10_000,
        b'{"payload_base64": "eA==", "name": "\\ud800"}',
        b"\x00",
        b"",
        b'"' * 5000,
    ],
)
def test_malformed_json_never_500s(admin, method, parts, body):  # noqa: F811
    response = getattr(admin, method)(url(*parts), body, content_type="application/json")
    assert 400 <= response.status_code < 500, response.content[:500]
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"]


def test_brackets_inside_strings_do_not_count(admin):  # noqa: F811
    tag = "[" * 200 + '"\\' + "{" * 200
    response = admin.post(
        url("queues", ACL_QUEUE, "tasks"),
        {"payload_base64": "eA==", "tag": tag},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["tag"] == tag
    assert json_depth(b'[{"a": "[[[[{{{{\\"]]"}]') == 2
    assert json_depth(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) == MAX_DEPTH


def test_a_body_over_the_limit_is_a_413(admin, settings):  # noqa: F811
    # Django's own limit off, so the API's is the one that answers.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None
    body = b'{"names": ["' + b"x" * MAX_BODY_BYTES + b'"]}'
    response = admin.post(url("queues", ACL_QUEUE, "delete"), body, content_type="application/json")
    assert_error(response, 413, "request_too_large")


def test_a_payload_of_exactly_1_mib_is_accepted(admin):  # noqa: F811
    tasks = url("queues", ACL_QUEUE, "tasks")
    payload = b"x" * MAX_PULL_TASK_SIZE_BYTES
    response = admin.post(tasks, {"payload_base64": b64(payload), "name": "mib"}, format="json")
    assert response.status_code == 201, response.content[:500]
    got = admin.get(url("queues", ACL_QUEUE, "tasks", "mib"))
    assert len(got.json()["payload_base64"]) == len(b64(payload))
    one_more = admin.post(tasks, {"payload_base64": b64(payload + b"x")}, format="json")
    assert_error(one_more, 413, "task_too_large")
