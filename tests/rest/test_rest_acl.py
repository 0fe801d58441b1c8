"""The REST API's authentication, the queue acl and the Django permissions that override it."""
# ruff: noqa: F811  (pytest fixtures imported from rest_helpers are test arguments)

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_taskqueue import checks
from django_taskqueue.taskqueue import Queue

from .rest_helpers import (  # noqa: F401  (fixtures)
    ACL_QUEUE,
    _fresh_throttle,
    add_pull,
    anonymous,
    client_for,
    consumer,
    make_user,
    producer,
    stranger,
    url,
)

pytestmark = pytest.mark.django_db


def call(client: APIClient, operation: str, queue: str = ACL_QUEUE):
    """Make the request of one row of the API's table; the task t1 exists and is leased."""
    task = url("queues", queue, "tasks", "t1")
    if operation == "queue":
        return client.get(url("queues", queue))
    if operation == "list":
        return client.get(url("queues", queue, "tasks"))
    if operation == "insert":
        return client.post(url("queues", queue, "tasks"), {"payload_base64": "eA"}, format="json")
    if operation == "get":
        return client.get(task)
    if operation == "delete":
        return client.delete(task)
    if operation == "lease":
        return client.post(
            url("queues", queue, "lease"), {"lease_seconds": 10, "max_tasks": 1}, format="json"
        )
    if operation == "modify":
        [leased] = Queue(queue).lease_tasks(60, 1) or [None]
        eta = leased.eta.isoformat() if leased else "2025-01-01T00:00:00Z"
        return client.post(task + "lease/", {"lease_seconds": 5, "eta": eta}, format="json")
    if operation == "delete-batch":
        return client.post(url("queues", queue, "delete"), {"names": ["t1"]}, format="json")
    raise AssertionError(operation)


OK = {
    "queue": 200,
    "list": 200,
    "insert": 201,
    "get": 200,
    "delete": 204,
    "lease": 200,
    "modify": 200,
    "delete-batch": 200,
}
CONSUMER_MAY = {"queue", "list", "get", "delete", "lease", "modify", "delete-batch"}
PRODUCER_MAY = {"queue", "insert"}


@pytest.fixture(autouse=True)
def _task(db):
    add_pull(ACL_QUEUE, name="t1")
    add_pull("pull-queue", name="t1")


@pytest.mark.parametrize("operation", list(OK))
def test_consumer(consumer, operation):
    response = call(consumer, operation)
    if operation in CONSUMER_MAY:
        assert response.status_code == OK[operation], response.content
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("operation", list(OK))
def test_producer(producer, operation):
    response = call(producer, operation)
    if operation in PRODUCER_MAY:
        assert response.status_code == OK[operation], response.content
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("operation", list(OK))
def test_stranger(stranger, operation):
    response = call(stranger, operation)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("operation", list(OK))
def test_anonymous(anonymous, operation):
    response = call(anonymous, operation)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


def test_anonymous_cannot_list_queues(anonymous):
    response = anonymous.get(url("queues"))
    assert response.status_code == 401


def test_acl_does_not_reach_other_queues(consumer, producer):
    for client in (consumer, producer):
        for operation in OK:
            assert call(client, operation, "pull-queue").status_code == 403


def test_a_user_without_email_matches_no_acl(db):
    client = client_for(make_user("nobody", ""))
    assert call(client, "list").status_code == 403


PERMISSION_GRANTS = {
    "view_taskrecord": {"queue", "list", "get"},
    "add_taskrecord": {"queue", "insert"},
    "change_taskrecord": {"queue", "lease", "modify"},
    "delete_taskrecord": {"queue", "delete", "delete-batch"},
}


@pytest.mark.parametrize("permission", list(PERMISSION_GRANTS))
@pytest.mark.parametrize("operation", list(OK))
def test_django_permissions_override_the_acl(permission, operation):
    client = client_for(make_user("service", "service@example.com", permission))
    response = call(client, operation, "pull-queue")
    expected = OK[operation] if operation in PERMISSION_GRANTS[permission] else 403
    assert response.status_code == expected, response.content


@pytest.mark.parametrize("operation", list(OK))
def test_superuser_may_do_everything(operation):
    client = client_for(User.objects.create_superuser("root", "root@example.com", "pw"))
    assert call(client, operation, "pull-queue").status_code == OK[operation]


def test_permission_holder_sees_every_pull_queue(db):
    client = client_for(make_user("viewer", "", "view_taskrecord"))
    names = [q["name"] for q in client.get(url("queues")).json()]
    assert names == ["pull-acl", "pull-limited", "pull-queue"]


class TestAuthentication:
    def test_token(self, db):
        user = make_user("worker", "consumer@example.com")
        token = Token.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        assert call(client, "lease").status_code == 200

    def test_bad_token(self, db):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
        response = call(client, "list")
        assert response.status_code == 401
        assert response.json() == {"code": "authentication_failed", "detail": "Invalid token."}

    def test_session(self, db):
        make_user("browser", "consumer@example.com")
        client = APIClient()
        assert client.login(username="browser", password="pw")
        assert call(client, "get").status_code == 200

    def test_session_needs_csrf(self, db):
        make_user("browser", "consumer@example.com")
        client = APIClient(enforce_csrf_checks=True)
        assert client.login(username="browser", password="pw")
        response = call(client, "lease")
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert "CSRF" in response.json()["detail"]

    def test_configurable(self, db, settings):
        user = make_user("worker", "consumer@example.com")
        token = Token.objects.create(user=user)
        settings.TASKQUEUE = {
            **settings.TASKQUEUE,
            "REST_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
        }
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        # Tokens are no longer read; without an authentication header to offer, DRF says 403.
        response = call(client, "list")
        assert response.status_code == 403
        assert response.json()["code"] == "not_authenticated"


class TestChecks:
    def run(self, **taskqueue):
        with override_settings(TASKQUEUE=taskqueue):
            return [m.id for m in checks.check_rest(None)]

    def test_defaults_pass(self):
        assert self.run() == []
        assert self.run(REST_LEASE_RATE=None, REST_AUTHENTICATION_CLASSES=[]) == []

    @pytest.mark.parametrize("rate", ["10", "ten/s", "0/s", 10, "10/x"])
    def test_bad_rate(self, rate):
        assert self.run(REST_LEASE_RATE=rate) == ["django_taskqueue.E013"]

    @pytest.mark.parametrize("classes", ["rest_framework.authentication.X", ["no.such.Class"], [1]])
    def test_bad_authentication_classes(self, classes):
        assert self.run(REST_AUTHENTICATION_CLASSES=classes) == ["django_taskqueue.E013"]
