"""Signed task requests: signature, replay protection, the middleware and the decorator."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from django_taskqueue import security
from django_taskqueue.models import TaskRecord, TaskState
from django_taskqueue.security import (
    SIGNATURE_HEADER,
    TaskHeaderMiddleware,
    sign,
    task_view,
    verify,
)
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import run_tasks

from .conftest import row

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_task(frozen_clock):
    Queue("default").add(Task(b"body", name="sig", url="/protected"))
    TaskRecord.objects.filter(name="sig").update(state=TaskState.RUNNING, retry_count=2)
    return TaskRecord.objects.get(name="sig")


def signed_request(
    task, *, attempt=3, body=b"body", path="/protected", method="POST", headers=None, **extra
):
    """Return a request signed as the worker signs one; `headers` are sent and signed."""
    sent = {
        "X-AppEngine-QueueName": task.queue_name,
        "X-AppEngine-TaskName": task.name,
        "Content-Type": "application/octet-stream",
        **(headers or {}),
    }
    signature = sign(
        queue_name=task.queue_name,
        task_name=task.name,
        task_id=task.id,
        attempt=attempt,
        method=method,
        path=path,
        body=body,
        headers=sent,
    )
    meta = {
        security._meta_key(name): value for name, value in sent.items() if name != "Content-Type"
    }
    factory = RequestFactory()
    return factory.generic(
        method,
        path,
        body,
        content_type=sent["Content-Type"],
        HTTP_X_TASKQUEUE_SIGNATURE=signature,
        **meta,
        **extra,
    )


class TestVerify:
    def test_valid_signature(self, running_task):
        task = verify(signed_request(running_task))
        assert task is not None
        assert (task.queue_name, task.task_name, task.attempt) == ("default", "sig", 3)

    def test_any_change_breaks_it(self, running_task):
        request = signed_request(running_task)
        request.META["HTTP_X_APPENGINE_TASKNAME"] = "other"
        assert verify(request) is None
        tampered = signed_request(running_task)
        tampered._body = b"evil"
        assert verify(tampered) is None
        assert verify(signed_request(running_task, path="/elsewhere")) is not None
        moved = signed_request(running_task)
        moved.path_info = moved.path = "/elsewhere"
        assert verify(moved) is None

    def test_another_attempt_is_refused(self, running_task):
        # Attempt 3 is running (retry_count 2): a signature of attempt 2 is a replay.
        assert verify(signed_request(running_task, attempt=2)) is None

    def test_a_finished_task_is_refused(self, running_task):
        request = signed_request(running_task)
        TaskRecord.objects.filter(id=running_task.id).update(state=TaskState.SUCCEEDED)
        assert verify(request) is None

    def test_old_signatures_expire(self, running_task, frozen_clock):
        request = signed_request(running_task)
        frozen_clock.advance(301)
        assert verify(request) is None

    def test_fallback_keys_still_verify(self, running_task, settings):
        with override_settings(SECRET_KEY="old-secret-key-old-secret-key-old-secret-key-1234"):
            request = signed_request(running_task)
        settings.SECRET_KEY_FALLBACKS = ["old-secret-key-old-secret-key-old-secret-key-1234"]
        assert verify(request) is not None
        settings.SECRET_KEY_FALLBACKS = []
        assert verify(request) is None

    def test_explicit_signing_key(self, running_task, settings):
        settings.TASKQUEUE = {**settings.TASKQUEUE, "SIGNING_KEY": "k" * 40}
        request = signed_request(running_task)
        assert verify(request) is not None
        settings.TASKQUEUE = {**settings.TASKQUEUE, "SIGNING_KEY": "j" * 40}
        assert verify(request) is None

    def test_garbage_is_refused(self, rf):
        for value in ("", "v1", "v1:a:b:c:d", "v2:1:1:1.0:00", "v1:1:1:nan:00"):
            request = rf.get("/", HTTP_X_TASKQUEUE_SIGNATURE=value)
            assert verify(request) is None


class TestMiddleware:
    def view(self, request):
        seen = {k: v for k, v in request.headers.items() if k.lower().startswith("x-")}
        request.seen = seen
        return HttpResponse()

    def test_strips_task_headers_without_a_valid_signature(self, rf):
        request = rf.get(
            "/",
            HTTP_X_APPENGINE_QUEUENAME="default",
            HTTP_X_APPENGINE_TASKNAME="evil",
            HTTP_X_APPENGINE_CRON="true",
            HTTP_X_OTHER="kept",
        )
        request.headers  # noqa: B018  (cached before the middleware: must be rebuilt)
        TaskHeaderMiddleware(self.view)(request)
        assert request.seen == {"X-Other": "kept"}
        assert request.taskqueue_task is None

    def test_keeps_headers_of_a_signed_task_request(self, running_task):
        request = signed_request(running_task, headers={"X-AppEngine-TaskRetryCount": "2"})
        TaskHeaderMiddleware(self.view)(request)
        assert request.seen["X-Appengine-Queuename"] == "default"
        assert request.seen["X-Appengine-Taskretrycount"] == "2"
        assert request.taskqueue_task.task_id == running_task.id

    def test_only_an_in_process_object_is_trusted_without_a_signature(self, rf):
        # What a server or a client can put in the environ is a string: not trusted.
        request = rf.get(
            "/",
            HTTP_X_APPENGINE_QUEUENAME="default",
            **{security.IN_PROCESS_ENVIRON_KEY: "default:evil:1:1"},
        )
        TaskHeaderMiddleware(self.view)(request)
        assert request.seen == {}
        assert request.taskqueue_task is None
        # The worker's own in-process request carries the object itself.
        attempt = security.TaskRequest("default", "t", 7, 1)
        request = rf.get(
            "/", HTTP_X_APPENGINE_QUEUENAME="default", **{security.IN_PROCESS_ENVIRON_KEY: attempt}
        )
        TaskHeaderMiddleware(self.view)(request)
        assert request.seen == {"X-Appengine-Queuename": "default"}
        assert request.taskqueue_task is attempt

    def test_plain_requests_pass_untouched(self, rf):
        request = rf.get("/", HTTP_X_OTHER="kept")
        TaskHeaderMiddleware(self.view)(request)
        assert request.seen == {"X-Other": "kept"}
        assert request.taskqueue_task is None


class TestTaskView:
    def test_403_unless_signed_and_csrf_exempt(self, rf, running_task):
        view = task_view(lambda request: HttpResponse("ran"))
        assert view.csrf_exempt is True
        assert view(rf.post("/protected")).status_code == 403
        assert view(signed_request(running_task)).status_code == 200

    def test_works_without_the_middleware(self, running_task):
        view = task_view(lambda request: HttpResponse("ran"))
        forged = signed_request(running_task, attempt=1)
        assert view(forged).status_code == 403
        assert "HTTP_X_APPENGINE_QUEUENAME" not in forged.META


def test_signature_header_name():
    assert SIGNATURE_HEADER == "X-TaskQueue-Signature"


# -- security -------------------------------------------------------------------------------


class TestSecurity:
    def test_unsigned_request_to_protected_view_is_403(self, client):
        assert client.post("/protected").status_code == 403
        forged = {"X-AppEngine-QueueName": "default", "X-AppEngine-TaskName": "x"}
        assert client.post("/protected", headers=forged).status_code == 403

    def test_forged_headers_are_stripped(self, client):
        headers = {
            "X-AppEngine-QueueName": "default",
            "X-AppEngine-TaskName": "evil",
            "X-TaskQueue-Signature": "v1:1:1:1700000000.0:" + "0" * 64,
        }
        response = client.get("/headers-seen", headers=headers)
        assert response.json() == {}

    def test_signed_task_reaches_protected_view(self, recorder, frozen_clock):
        Queue("default").add(Task(name="ok", url="/protected"))
        assert run_tasks() == 1
        assert row("ok").state == TaskState.SUCCEEDED
        assert recorder.entries()[0]["signed"] is True

    def test_escaped_url_and_query_still_verify(self, recorder, frozen_clock):
        Queue("default").add(
            Task(method="GET", name="esc", url="/protected/caf%C3%A9%20x?q=a%20b&r=%7E")
        )
        assert run_tasks() == 1
        assert row("esc").state == TaskState.SUCCEEDED
        [seen] = recorder.entries()
        assert seen["path"] == "/protected/café x"

    def test_replayed_signature_is_refused(self, client, recorder, frozen_clock):
        Queue("default").add(Task(b"b", name="once", url="/protected"))
        run_tasks()
        [seen] = recorder.entries()
        replay = {k: v for k, v in seen["headers"].items() if k.lower().startswith("x-")}
        response = client.post(
            "/protected", data=b"b", content_type="application/octet-stream", headers=replay
        )
        assert response.status_code == 403

    def test_protected_view_is_csrf_exempt_for_tasks(self, recorder, frozen_clock, settings):
        # Even with CSRF checks enforced, a task POST (no token) reaches the view.
        Queue("default").add(Task(b"b", name="csrf", url="/protected"))
        run_tasks()
        assert row("csrf").state == TaskState.SUCCEEDED
