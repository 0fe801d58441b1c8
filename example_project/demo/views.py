"""Views of the three scenarios: background parsing, a pull-queue leaderboard, Python callables."""

import datetime
import json
import random

from django.contrib import messages
from django.db import transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_taskqueue import deferred, taskqueue
from django_taskqueue.exceptions import UnknownTaskError
from django_taskqueue.rest.permissions import has_right
from django_taskqueue.security import task_view

from . import jobs, parsing
from .forms import CallableForm, ScoreForm, UploadForm
from .models import PlayerScore, Upload

UPLOAD_QUEUE = "uploads"
#: The name of the deployment that parses uploads: a key of TASKQUEUE["TARGETS"].
PARSER_TARGET = "parser"
SCORE_QUEUE = "scores"
CALLABLE_QUEUE = "callables"


def index(request: HttpRequest) -> HttpResponse:
    """The three scenarios, and the statistics of their queues."""
    queues = ["default", UPLOAD_QUEUE, SCORE_QUEUE, CALLABLE_QUEUE]
    return render(
        request, "demo/index.html", {"statistics": taskqueue.QueueStatistics.fetch(queues)}
    )


# Upload and parse in the background ------------------------------------------------------------


def uploads(request: HttpRequest) -> HttpResponse:
    """Upload a CSV: store it, add a parse task, and go to the page that waits for the result."""
    form = UploadForm()
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            file = form.cleaned_data["file"]
            # The row and its task commit together: no task for a file that was not saved.
            with transaction.atomic():
                upload = Upload.objects.create(filename=file.name, data=file.read())
                task = taskqueue.add(
                    url=reverse("demo:parse-task"),
                    params={"upload": upload.pk},
                    queue_name=UPLOAD_QUEUE,
                    target=PARSER_TARGET,
                    transactional=True,
                )
                upload.task_name = task.name
                upload.save(update_fields=["task_name"])
            return redirect("demo:upload", pk=upload.pk)
    return render(
        request,
        "demo/uploads.html",
        {"form": form, "uploads": Upload.objects.defer("data")[:10], "queue": UPLOAD_QUEUE},
    )


def upload(request: HttpRequest, pk: int) -> HttpResponse:
    """The page of one upload; its script polls is_ready until the parser is done."""
    found = get_object_or_404(Upload.objects.defer("data"), pk=pk)
    return render(request, "demo/upload.html", {"upload": found, "queue": UPLOAD_QUEUE})


def is_ready(request: HttpRequest, pk: int) -> JsonResponse:
    """Whether the upload is parsed, with its result or the reason it failed."""
    found = get_object_or_404(Upload.objects.defer("data"), pk=pk)
    return JsonResponse(
        {
            "isReady": found.is_ready,
            "status": found.status,
            "result": found.result,
            "error": found.error,
        }
    )


def sample_csv(request: HttpRequest) -> HttpResponse:
    """A sales CSV to try the upload with; ?broken=LINE spoils that line."""
    broken = request.GET.get("broken")
    data = parsing.sample_sales(
        rows=3000, broken_line=int(broken) if broken and broken.isdigit() else None
    )
    name = "sales-broken.csv" if broken else "sales.csv"
    response = HttpResponse(data, content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# task_view answers 403 to anything but a signed request from the task queue (App Engine's
# `login: admin` for task URLs); TaskHeaderMiddleware has already stripped X-AppEngine-* headers
# from any request that is not signed, so they can be trusted here.
@task_view
@require_POST
def parse_task(request: HttpRequest) -> HttpResponse:
    """Parse an upload. A file that cannot be parsed is recorded as failed, not retried."""
    found = Upload.objects.filter(pk=request.POST.get("upload", "")).first()
    if found is None or found.is_ready:
        return HttpResponse("nothing to do")  # deleted, or parsed by an earlier attempt
    try:
        found.result = parsing.parse_sales(bytes(found.data))
        found.status = Upload.Status.PARSED
    except parsing.ParseError as e:
        # The file is at fault: another attempt would fail the same way, so the task succeeds
        # and the upload carries the reason. Any other exception is a 500, and the queue retries.
        found.status = Upload.Status.FAILED
        found.error = str(e)
    found.parsed_at = timezone.now()
    found.save(update_fields=["result", "status", "error", "parsed_at"])
    return HttpResponse(found.status)


# A leaderboard fed by a pull queue -------------------------------------------------------------


def leaderboard(request: HttpRequest) -> HttpResponse:
    """Add score events as pull tasks tagged by game; the page shows the totals as they come."""
    form = ScoreForm()
    if request.method == "POST":
        if "random" in request.POST:
            count = add_random_scores(200)
            messages.success(request, f"Added {count} score events.")
            return redirect("demo:leaderboard")
        form = ScoreForm(request.POST)
        if form.is_valid():
            add_scores([form.cleaned_data])
            messages.success(request, "Added 1 score event.")
            return redirect("demo:leaderboard")
    return render(
        request,
        "demo/leaderboard.html",
        {"form": form, "queue": SCORE_QUEUE, "board": leaderboard_data()},
    )


def leaderboard_json(request: HttpRequest) -> JsonResponse:
    """The leaderboard, and how many score events still wait for the consumer."""
    return JsonResponse(leaderboard_data())


def leaderboard_data() -> dict:
    games: dict[str, list[dict]] = {}
    for score in PlayerScore.objects.all():
        games.setdefault(score.game, [])
        if len(games[score.game]) < 10:
            games[score.game].append(
                {"player": score.player, "points": score.points, "events": score.events}
            )
    waiting = taskqueue.Queue(SCORE_QUEUE).fetch_statistics().tasks
    return {"games": games, "waiting": waiting}


def add_scores(events: list[dict]) -> None:
    """Add one pull task per event, tagged with its game, in batches of App Engine's limit."""
    tasks = [
        taskqueue.Task(
            payload=json.dumps({"player": e["player"], "points": int(e["points"])}),
            method="PULL",
            tag=e["game"],
        )
        for e in events
    ]
    queue = taskqueue.Queue(SCORE_QUEUE)
    with transaction.atomic():  # all the events or none
        for start in range(0, len(tasks), taskqueue.MAX_TASKS_PER_ADD):
            queue.add(tasks[start : start + taskqueue.MAX_TASKS_PER_ADD])


def add_random_scores(count: int) -> int:
    players = ["ada", "grace", "alan", "edsger", "barbara", "ken", "margaret"]
    games = ["chess", "snake", "tetris"]
    add_scores(
        [
            {
                "game": random.choice(games),
                "player": random.choice(players),
                "points": random.randint(1, 50),
            }
            for _ in range(count)
        ]
    )
    return count


class ScoreTotals(APIView):
    """Where the leaderboard consumer reports the totals of a leased batch (one game).

    Body: ``{"game": "chess", "totals": {"ada": 120, ...}, "events": {"ada": 3, ...}}``.
    """

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        # Whoever may lease the score events may report their totals: the queue's acl decides.
        if not has_right(request.user, taskqueue.Queue(SCORE_QUEUE).config, "lease"):
            return Response(
                {"detail": f"You may not lease from {SCORE_QUEUE!r}", "code": "permission_denied"},
                status=403,
            )
        body = request.data if isinstance(request.data, dict) else {}
        game, totals, events = body.get("game"), body.get("totals"), body.get("events") or {}
        if not (
            isinstance(game, str)
            and isinstance(totals, dict)
            and isinstance(events, dict)
            and 0 < len(game) <= 100
            and all(0 < len(player) <= 100 for player in totals)
            and all(isinstance(n, int) for n in [*totals.values(), *events.values()])
        ):
            return Response(
                {
                    "detail": "game (a string) and totals (player to points) are required; "
                    "events, if given, maps players to counts",
                    "code": "invalid",
                },
                status=400,
            )
        # Writes only, the update first: on SQLite a transaction that reads before it writes
        # can fail with "database is locked" while the worker writes; a first write waits.
        with transaction.atomic():
            for player, points in totals.items():
                count = int(events.get(player, 1))
                updated = PlayerScore.objects.filter(game=game, player=player).update(
                    points=F("points") + int(points), events=F("events") + count
                )
                if not updated:
                    PlayerScore.objects.create(
                        game=game, player=player, points=int(points), events=count
                    )
        return Response({"game": game, "players": len(totals)})


# Python callables with results ---------------------------------------------------------------


def callables(request: HttpRequest) -> HttpResponse:
    """Defer a call of each kind `deferred` accepts; the page shows each result by its id."""
    form = CallableForm()
    if request.method == "POST":
        form = CallableForm(request.POST)
        if form.is_valid():
            result_id = enqueue_callable(**form.cleaned_data)
            label = dict(CallableForm.KINDS)[form.cleaned_data["kind"]].split(":")[0]
            recent = [[result_id, label], *request.session.get("callables", [])][:8]
            request.session["callables"] = recent
            messages.success(request, f"Added {label}: its id is {result_id}.")
            return redirect("demo:callables")
    return render(
        request,
        "demo/callables.html",
        {
            "form": form,
            "queue": CALLABLE_QUEUE,
            "recent": [
                _shown(result_id, label)
                for result_id, label in request.session.get("callables", [])
            ],
        },
    )


def _shown(result_id: str, label: str) -> dict:
    call = {"id": result_id, "label": label, **callable_result(result_id)}
    if call["value"] is not None and not isinstance(call["value"], str):
        call["value"] = json.dumps(call["value"])  # as the page's script shows it
    return call


def enqueue_callable(kind: str, text: str, countdown: int) -> str:
    """Add the call `kind` names and return its result id ("queue:name")."""
    options = {"_queue": CALLABLE_QUEUE, "_countdown": countdown}
    if kind == "function":
        task = deferred.defer(jobs.count_words, text, **options)
    elif kind == "raises":
        task = deferred.defer(jobs.average, [], **options)
    elif kind == "method":
        amounts = [word for word in text.split() if _is_amount(word)] or ["19.99", "5"]
        task = deferred.defer(jobs.Invoice("Ada", vat_percent=20).total, amounts, **options)
    elif kind == "instance":
        task = deferred.defer(jobs.Greeter("Hello"), text, **options)
    else:
        run_after = timezone.now() + datetime.timedelta(seconds=countdown)
        return jobs.shout.using(run_after=run_after).enqueue(text).id
    return f"{task.queue_name}:{task.name}"


def _is_amount(word: str) -> bool:
    return word.replace(".", "", 1).isdigit()


def callable_result(result_id: str) -> dict:
    """The status of a call by its id, with its return value or its error."""
    queue_name, _, name = result_id.partition(":")
    try:
        found = deferred.get_result(name, queue_name)
    except UnknownTaskError:
        raise Http404(f"No task {result_id!r}") from None
    answer = {"status": found.status, "attempts": found.attempts, "value": None, "error": None}
    if found.status == deferred.ResultStatus.SUCCESSFUL:
        answer["value"] = found.return_value
    elif found.errors:
        last = found.errors[-1]
        answer["error"] = (
            last.traceback.strip().splitlines()[-1] if last.traceback else last.exception_class_path
        )
    return answer


def callable_json(request: HttpRequest, result_id: str) -> JsonResponse:
    """One call's result by its id (GET ?id=queue:name)."""
    return JsonResponse({"id": result_id, **callable_result(result_id)})
