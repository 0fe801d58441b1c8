"""Views of the demo: a page that adds push and pull tasks, and a push-task handler."""

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from django_taskqueue import deferred, taskqueue
from django_taskqueue.security import task_view

from . import jobs
from .forms import GreetingForm, PullTaskForm, TextForm
from .models import Greeting

PUSH_QUEUE = "greetings"
PULL_QUEUE = "pull-demo"


def index(request: HttpRequest) -> HttpResponse:
    """Show the forms and the greetings the handler has recorded."""
    return render(
        request,
        "demo/index.html",
        {
            "greeting_form": GreetingForm(),
            "pull_form": PullTaskForm(),
            "text_form": TextForm(),
            "greetings": Greeting.objects.all()[:20],
            "push_queue": PUSH_QUEUE,
            "pull_queue": PULL_QUEUE,
            "statistics": taskqueue.QueueStatistics.fetch(["default", PUSH_QUEUE, PULL_QUEUE]),
            "callable_results": _callable_results(request),
        },
    )


@require_POST
def greet(request: HttpRequest) -> HttpResponse:
    """Add a push task; the worker delivers it to greet_task."""
    form = GreetingForm(request.POST)
    if form.is_valid():
        try:
            # Part of the request's transaction: a rollback would remove the task too.
            with transaction.atomic():
                task = taskqueue.add(
                    url=reverse("demo:greet-task"),
                    params={"name": form.cleaned_data["name"]},
                    queue_name=PUSH_QUEUE,
                    countdown=form.cleaned_data["countdown"],
                    name=form.cleaned_data["task_name"] or None,
                    transactional=True,
                )
        except (taskqueue.TaskAlreadyExistsError, taskqueue.TombstonedTaskError) as error:
            messages.error(request, f"Not added: {error}")
        else:
            messages.success(request, f"Added task {task.name} to queue {PUSH_QUEUE!r}.")
    else:
        messages.error(request, f"Not added: {form.errors.as_text()}")
    return redirect("demo:index")


@require_POST
def pull_add(request: HttpRequest) -> HttpResponse:
    """Add a task to the pull queue, where it waits for a consumer."""
    form = PullTaskForm(request.POST)
    if form.is_valid():
        task = taskqueue.Task(
            payload=form.cleaned_data["payload"],
            method="PULL",
            tag=form.cleaned_data["tag"] or None,
        )
        taskqueue.Queue(PULL_QUEUE).add(task)
        messages.success(request, f"Added task {task.name} to pull queue {PULL_QUEUE!r}.")
    else:
        messages.error(request, f"Not added: {form.errors.as_text()}")
    return redirect("demo:index")


@require_POST
def pull_lease(request: HttpRequest) -> HttpResponse:
    """Lease up to ten pull tasks, show their payloads, and delete them (the work is done)."""
    queue = taskqueue.Queue(PULL_QUEUE)
    tasks = queue.lease_tasks(lease_seconds=60, max_tasks=10)
    for task in tasks:
        payload = task.payload
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        messages.info(request, f"Leased {task.name} (tag {task.tag!r}): {payload}")
    if tasks:
        queue.delete_tasks(tasks)
    else:
        messages.info(request, f"No task is waiting in {PULL_QUEUE!r}.")
    return redirect("demo:index")


# task_view answers 403 to anything but a signed request from the task queue (App Engine's
# `login: admin` for task URLs) and exempts it from CSRF; the middleware has already stripped
# X-AppEngine-* headers from any request that is not signed, so they can be trusted here.
@task_view
@require_POST
def greet_task(request: HttpRequest) -> HttpResponse:
    """Handle a greeting task: record it, or fail the first two attempts to show retries."""
    queue_name = request.headers["X-AppEngine-QueueName"]
    name = request.POST.get("name", "")
    retry_count = int(request.headers.get("X-AppEngine-TaskRetryCount", "0"))
    if name.lower().startswith("fail") and retry_count < 2:
        # Any non-2xx response makes the queue retry the task with backoff.
        return HttpResponse("Failing on purpose; the queue will retry.", status=503)
    Greeting.objects.create(
        name=name,
        queue_name=queue_name,
        task_name=request.headers.get("X-AppEngine-TaskName", ""),
        retry_count=retry_count,
    )
    return HttpResponse("ok")


@require_POST
def run_callables(request: HttpRequest) -> HttpResponse:
    """Defer a Python call and enqueue a Django Tasks task; the page shows their results."""
    form = TextForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not added: {form.errors.as_text()}")
        return redirect("demo:index")
    text = form.cleaned_data["text"]
    deferred_task = deferred.defer(jobs.count_words, text)
    result = jobs.shout.enqueue(text)
    request.session["callables"] = [deferred_task.name, result.id]
    messages.success(request, f"Deferred {deferred_task.name}; enqueued Django task {result.id}.")
    return redirect("demo:index")


def _callable_results(request: HttpRequest) -> list[tuple[str, object, object]]:
    names = request.session.get("callables")
    if not names:
        return []
    deferred_name, result_id = names
    found = deferred.get_result(deferred_name)
    shouted = jobs.shout.get_result(result_id)
    return [
        ("deferred count_words", found.status, found.return_value if found.is_finished else "…"),
        ("Django task shout", shouted.status, shouted.return_value if shouted.is_finished else "…"),
    ]
