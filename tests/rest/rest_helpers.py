"""Users, clients and shortcuts shared by the REST API tests."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from rest_framework.test import APIClient

from django_taskqueue.taskqueue import Queue, Task

API = "/taskqueue/api/"
ACL_QUEUE = "pull-acl"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def url(*parts: str) -> str:
    return API + "".join(f"{part}/" for part in parts)


def add_pull(queue: str = ACL_QUEUE, payload: bytes = b"p", **kwargs) -> Task:
    return Queue(queue).add(Task(payload, method="PULL", **kwargs))


def make_user(username: str, email: str = "", *permissions: str) -> User:
    user = User.objects.create_user(username, email=email, password="pw")
    for codename in permissions:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_taskqueue", codename=codename)
        )
    return user


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture(autouse=True)
def _fresh_throttle():
    # The lease throttle counts in the cache; each test starts with an empty window.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def consumer(db):
    return client_for(make_user("consumer", "Consumer@Example.com"))


@pytest.fixture
def producer(db):
    return client_for(make_user("producer", "producer@example.com"))


@pytest.fixture
def stranger(db):
    return client_for(make_user("stranger", "stranger@example.com"))


@pytest.fixture
def anonymous(db):
    return APIClient()


@pytest.fixture
def admin(db):
    """A service account with every task permission (no acl entry anywhere)."""
    return client_for(
        make_user(
            "service",
            "service@example.com",
            "view_taskrecord",
            "add_taskrecord",
            "change_taskrecord",
            "delete_taskrecord",
        )
    )
