"""Task handler views of the tests; each records the request it received as one JSON line.

The record file is named by the environment variable TASKQUEUE_TEST_RECORD, so a handler run by
a worker subprocess writes where the test reads. Each line holds the method, path, query, body,
headers, the process id and the start and end times of the handler.
"""

from __future__ import annotations

import json
import os
import time

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from django_taskqueue.security import task_view

RECORD_ENV = "TASKQUEUE_TEST_RECORD"


def record(request: HttpRequest, started: float, **extra: object) -> None:
    """Append what `request` carried to the record file (no-op without one)."""
    filename = os.environ.get(RECORD_ENV)
    if not filename:
        return
    entry = {
        "method": request.method,
        "path": request.path,
        "query": request.META.get("QUERY_STRING", ""),
        "body": request.body.decode("latin-1"),
        "headers": dict(request.headers),
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "signed": getattr(request, "taskqueue_task", None) is not None,
        "pid": os.getpid(),
        "started": started,
        "finished": time.time(),
        **extra,
    }
    # One write of one line: appends from several processes do not interleave.
    with open(filename, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@csrf_exempt
def echo(request: HttpRequest, **kwargs: object) -> HttpResponse:
    """Record the request; answer with the status of ?status= (default 200)."""
    record(request, time.time())
    return HttpResponse("ok", status=int(request.GET.get("status", 200)))


@csrf_exempt
def fail_first(request: HttpRequest) -> HttpResponse:
    """Record the request; answer 503 on the first attempt, 200 afterwards."""
    record(request, time.time())
    first = request.headers.get("X-AppEngine-TaskRetryCount") == "0"
    return HttpResponse("try again" if first else "ok", status=503 if first else 200)


@csrf_exempt
def boom(request: HttpRequest) -> HttpResponse:
    """Record the request, then raise."""
    record(request, time.time())
    raise RuntimeError("boom")


@csrf_exempt
def sleep(request: HttpRequest) -> HttpResponse:
    """Sleep for ?seconds= (default 0.05), recording start and end (for overlap and shutdown).

    With ?first=1 it sleeps on the first attempt only. With ?mark=1 it also records a
    "started" line before sleeping, so a test can act while the handler runs.
    """
    started = time.time()
    if request.GET.get("mark"):
        record(request, started, event="started")
    if not request.GET.get("first") or request.headers.get("X-AppEngine-TaskRetryCount") == "0":
        time.sleep(float(request.GET.get("seconds", 0.05)))
    record(request, started, event="finished")
    return HttpResponse("slept")


@csrf_exempt
def die(request: HttpRequest) -> HttpResponse:
    """Record the start, then kill the process that runs the handler (a poison task)."""
    import signal

    record(request, time.time(), event="started")
    os.kill(os.getpid(), signal.SIGKILL)
    return HttpResponse("unreachable")


@task_view
def protected(request: HttpRequest, **kwargs: object) -> HttpResponse:
    """Only signed task requests get here."""
    record(request, time.time())
    return HttpResponse("protected ok")


def headers_seen(request: HttpRequest) -> HttpResponse:
    """Answer with the X-AppEngine-* headers the view sees (as JSON), for the middleware test."""
    seen = {k: v for k, v in request.headers.items() if k.lower().startswith("x-appengine-")}
    return HttpResponse(json.dumps(seen), content_type="application/json")


def plain(request: HttpRequest) -> HttpResponse:
    """A view as a user writes it: no decorator at all (not even csrf_exempt)."""
    record(request, time.time())
    return HttpResponse("plain ok")


urlpatterns = [
    path("echo", echo),
    path("plain", plain),
    path("slashed/", plain),
    path("fail-first", fail_first),
    path("boom", boom),
    path("sleep", sleep),
    path("die", die),
    path("protected", protected),
    path("protected/<str:word>", protected),
    path("headers-seen", headers_seen),
    path("_ah/queue/<str:queue_name>", echo),
]
