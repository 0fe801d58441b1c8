"""Views of the demo: a page that adds push and pull tasks, and a push-task handler."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_taskqueue import taskqueue

from .forms import GreetingForm, PullTaskForm
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
            "greetings": Greeting.objects.all()[:20],
            "push_queue": PUSH_QUEUE,
            "pull_queue": PULL_QUEUE,
        },
    )


@require_POST
def greet(request: HttpRequest) -> HttpResponse:
    """Add a push task; the worker delivers it to greet_task."""
    form = GreetingForm(request.POST)
    if form.is_valid():
        task = taskqueue.add(
            url=reverse("demo:greet-task"),
            params={"name": form.cleaned_data["name"]},
            queue_name=PUSH_QUEUE,
            countdown=form.cleaned_data["countdown"],
        )
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


# Tasks carry no CSRF token. X-AppEngine-QueueName proves the caller is the task queue only
# when django_taskqueue's middleware strips unsigned task headers (as App Engine's front end does).
@csrf_exempt
@require_POST
def greet_task(request: HttpRequest) -> HttpResponse:
    """Handle a greeting task: record it, or fail the first two attempts to show retries."""
    queue_name = request.headers.get("X-AppEngine-QueueName")
    if queue_name is None:
        return HttpResponseForbidden("Only the task queue may call this URL.")
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
