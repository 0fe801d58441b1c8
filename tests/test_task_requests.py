"""A task request passes Django's default middleware with DEBUG=False; what cannot work is
reported by a system check, and a failed attempt says why in words."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client, override_settings

from django_taskqueue import checks
from django_taskqueue.dispatch import passage
from django_taskqueue.dispatch.delivery import task_headers
from django_taskqueue.models import QueueState, TaskRecord, TaskState
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import run_tasks

from .conftest import claim_now

pytestmark = pytest.mark.django_db

#: MIDDLEWARE of a project made by `django-admin startproject` (Django 5.2 and 6.0).
DEFAULT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TASK_HEADER_MIDDLEWARE = "django_taskqueue.security.TaskHeaderMiddleware"
WITH_TASK_HEADERS = [DEFAULT_MIDDLEWARE[0], TASK_HEADER_MIDDLEWARE, *DEFAULT_MIDDLEWARE[1:]]
# Last on purpose: its CSRF exemption must not depend on coming before CsrfViewMiddleware.
WITH_TASK_HEADERS_LAST = [*DEFAULT_MIDDLEWARE, TASK_HEADER_MIDDLEWARE]

MIDDLEWARES = pytest.mark.parametrize(
    "middleware",
    [DEFAULT_MIDDLEWARE, WITH_TASK_HEADERS, WITH_TASK_HEADERS_LAST],
    ids=["django-default", "with-TaskHeaderMiddleware", "TaskHeaderMiddleware-last"],
)


def row(name: str) -> TaskRecord:
    return TaskRecord.objects.get(queue_name="default", name=name)


# -- in-process delivery ----------------------------------------------------------------------


@MIDDLEWARES
@pytest.mark.parametrize("allowed_hosts", [[".example.com"], ["www.example.com"], ["*"]])
def test_plain_view_runs_in_process(recorder, frozen_clock, middleware, allowed_hosts):
    with override_settings(MIDDLEWARE=middleware, DEBUG=False, ALLOWED_HOSTS=allowed_hosts):
        assert checks.check_task_requests() == []
        host = passage.delivery_host()
        Queue("default").add(Task(b"a=1", name="plain", url="/plain"))
        assert run_tasks() == 1
    assert row("plain").state == TaskState.SUCCEEDED
    [seen] = recorder.entries()
    assert seen["method"] == "POST"
    assert seen["headers"]["Host"] == host


def test_host_is_derived_from_allowed_hosts(settings):
    settings.DEBUG = False
    for allowed, expected in [
        ([".example.com"], "example.com"),
        ([".example.com", "www.example.org"], "www.example.org"),
        (["*"], "localhost"),
        ([], "localhost"),
    ]:
        settings.ALLOWED_HOSTS = allowed
        assert passage.delivery_host() == expected
    settings.ALLOWED_HOSTS = [".example.com"]
    settings.TASKQUEUE = {**settings.TASKQUEUE, "DELIVERY_HOST": "tasks.example.com"}
    assert passage.delivery_host() == "tasks.example.com"


def test_debug_with_empty_allowed_hosts_accepts_localhost(settings):
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = []
    assert passage.host_is_allowed(passage.delivery_host())
    settings.DEBUG = False
    assert not passage.host_is_allowed(passage.delivery_host())


# -- HTTP delivery: a real server running Django's handler ------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def django_server():
    """Start Django's WSGI handler on a free port, once the test has set MIDDLEWARE."""
    servers: list[WSGIServer] = []

    def start() -> str:
        server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db(transaction=True)
@MIDDLEWARES
def test_plain_view_runs_over_http(recorder, settings, django_server, middleware):
    settings.MIDDLEWARE = middleware
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    base = django_server()
    settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {"web": base}}
    Queue("default").add(Task(b"a=1", name="over-http", url="/plain", target="web"))
    assert run_tasks() == 1
    task = row("over-http")
    assert task.state == TaskState.SUCCEEDED, task.last_error
    [seen] = recorder.entries()
    # With the middleware, the signature was verified on the way in.
    assert seen["signed"] is (TASK_HEADER_MIDDLEWARE in middleware)


@pytest.mark.django_db(transaction=True)
def test_without_the_csrf_pair_the_refusal_is_explained(
    recorder, settings, django_server, monkeypatch
):
    """What the CSRF pair is for: Django's default MIDDLEWARE refuses the request without it."""
    monkeypatch.setattr(passage, "add_csrf_pair", lambda headers, base_url: None)
    settings.MIDDLEWARE = DEFAULT_MIDDLEWARE
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    base = django_server()
    settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {"web": base}}
    Queue("default").add(Task(b"a=1", name="refused", url="/plain", target="web"))
    run_tasks()
    task = row("refused")
    assert task.state == TaskState.QUEUED
    assert task.last_response_code == 403
    assert "CSRF verification failed" in task.last_error
    assert recorder.entries() == []


@pytest.mark.django_db(transaction=True)
def test_a_target_refusing_the_host_is_explained(recorder, settings, django_server):
    settings.ALLOWED_HOSTS = ["www.example.com"]
    base = django_server()
    settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {"web": base}}
    Queue("default").add(Task(name="elsewhere", url="/plain", target="web"))
    run_tasks()
    task = row("elsewhere")
    assert task.last_response_code == 400
    assert "ALLOWED_HOSTS" in task.last_error and base in task.last_error


def test_middleware_exempts_a_signed_request_from_csrf(frozen_clock, settings):
    """Without the worker's CSRF cookie, the verified signature alone passes CSRF."""
    settings.MIDDLEWARE = WITH_TASK_HEADERS
    Queue("default").add(Task(b"x", name="signed", url="/plain"))
    QueueState.objects.create(name="default")
    [task] = claim_now("default", frozen_clock).tasks
    headers = task_headers(task)
    client = Client(enforce_csrf_checks=True)
    post = {"data": b"x", "content_type": "application/octet-stream"}
    assert client.post("/plain", headers=headers, **post).status_code == 200
    # The same request unsigned is refused by CsrfViewMiddleware.
    unsigned = {k: v for k, v in headers.items() if k != "X-TaskQueue-Signature"}
    assert client.post("/plain", headers=unsigned, **post).status_code == 403


def test_csrf_pair_over_https_adds_a_same_origin_referer():
    headers = {"Cookie": "a=b"}
    passage.add_csrf_pair(headers, "https://tasks.example.com:8443/base")
    assert headers["Referer"] == "https://tasks.example.com:8443/"
    cookie = headers["Cookie"]
    assert cookie.startswith("a=b; csrftoken=")
    assert cookie.rsplit("=", 1)[1] == headers["X-Csrftoken"]


# -- what a failure says ----------------------------------------------------------------------


def test_disallowed_host_is_explained_and_checked(recorder, frozen_clock, settings, caplog):
    settings.ALLOWED_HOSTS = [".example.com"]
    settings.TASKQUEUE = {**settings.TASKQUEUE, "DELIVERY_HOST": "localhost"}
    assert [m.id for m in checks.check_task_requests()] == ["django_taskqueue.E040"]
    Queue("default").add(Task(name="host", url="/plain"))
    with caplog.at_level("INFO", logger="django_taskqueue"):
        run_tasks()
    task = row("host")
    assert task.state == TaskState.QUEUED
    assert task.last_retry_reason == "HTTP 400"  # App Engine's reason, unchanged
    assert "DisallowedHost" in task.last_error and "DELIVERY_HOST" in task.last_error
    [line] = [r.getMessage() for r in caplog.records if "task=host" in r.getMessage()]
    assert "why=" in line and "ALLOWED_HOSTS" in line


def test_404_names_the_path(recorder, frozen_clock, caplog):
    Queue("default").add(Task(name="nowhere", url="/no/such/handler"))
    with caplog.at_level("INFO", logger="django_taskqueue"):
        run_tasks()
    task = row("nowhere")
    assert task.last_retry_reason == "HTTP 404"
    assert "/no/such/handler" in task.last_error and "Not Found" in task.last_error
    assert any("/no/such/handler" in r.getMessage() for r in caplog.records)


def test_missing_trailing_slash_is_explained(recorder, frozen_clock):
    Queue("default").add(Task(name="slash", url="/slashed"))
    run_tasks()
    assert "trailing slash" in row("slash").last_error


def test_exception_class_and_message_in_the_log(recorder, frozen_clock, caplog):
    Queue("default").add(Task(name="boom", url="/boom"))
    with caplog.at_level("INFO", logger="django_taskqueue"):
        run_tasks()
    [line] = [r.getMessage() for r in caplog.records if "task=boom" in r.getMessage()]
    assert 'why="RuntimeError: boom"' in line
    assert "RuntimeError: boom" in row("boom").last_error  # the traceback


# -- checks -----------------------------------------------------------------------------------


def test_e040_when_nothing_is_accepted(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = []
    [message] = checks.check_task_requests()
    assert message.id == "django_taskqueue.E040" and message.hint
    settings.ALLOWED_HOSTS = [".example.com"]
    assert checks.check_task_requests() == []


def test_w041_login_required_middleware(settings, recorder, frozen_clock):
    login = "django.contrib.auth.middleware.LoginRequiredMiddleware"
    settings.MIDDLEWARE = [*DEFAULT_MIDDLEWARE, login]
    [message] = checks.check_task_requests()
    assert message.id == "django_taskqueue.W041" and message.hint
    # task_view lets task requests through to its own signature check.
    Queue("default").add(Task(name="protected", url="/protected"))
    assert run_tasks() == 1
    assert row("protected").state == TaskState.SUCCEEDED


def test_w043_csrf_in_sessions_needs_the_middleware_for_http_targets(settings):
    settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {"web": "https://web.internal"}}
    settings.CSRF_USE_SESSIONS = True
    assert checks.check_task_requests() == []  # the suite's MIDDLEWARE has it
    settings.MIDDLEWARE = DEFAULT_MIDDLEWARE
    [message] = checks.check_task_requests()
    assert message.id == "django_taskqueue.W043" and message.hint
    settings.TASKQUEUE = {**settings.TASKQUEUE, "TARGETS": {}}
    assert checks.check_task_requests() == []


def test_e042_token_authentication_without_authtoken(settings):
    assert checks.check_rest_authentication() == []
    apps = [a for a in settings.INSTALLED_APPS if a != "rest_framework.authtoken"]
    with override_settings(INSTALLED_APPS=apps):
        [message] = checks.check_rest_authentication()
        assert message.id == "django_taskqueue.E042"
        assert "rest_framework.authtoken" in message.msg and message.hint
        # Only when the REST API is mounted.
        with override_settings(ROOT_URLCONF="tests.deferred_urls"):
            assert checks.check_rest_authentication() == []
        settings.TASKQUEUE = {
            **settings.TASKQUEUE,
            "REST_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
        }
        assert checks.check_rest_authentication() == []
