"""The admin's dashboard pages: figures, charts, actions, live fragments and their query count."""

import datetime

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from django_taskqueue import humanize, taskqueue
from django_taskqueue.dashboard import overview, slowest_tasks
from django_taskqueue.dispatch.minute_stats import MinuteStats, minute_of
from django_taskqueue.models import QueueState, TaskRecord, TaskState
from django_taskqueue.queues import all_queue_configs
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import run_tasks

DASHBOARD_URL = reverse("admin:django_taskqueue_dashboard")


def queue_url(name):
    return reverse("admin:django_taskqueue_dashboard_queue", args=[name])


# -- numbers for people (no database) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("per_second", "text"),
    [
        (None, "-"),
        (0, "0/s"),
        (5, "5/s"),
        (4.6803, "4.7/s"),
        (123.4, "120/s"),
        (0.5, "30/min"),
        (0.000046803324912091466, "0.17/h"),
        (0.00000001, "0.000036/h"),
    ],
)
def test_rates_read_to_two_significant_figures(per_second, text):
    assert humanize.rate(per_second) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (59.9, "59 seconds"),
        (61, "1 minute 1 second"),
        (3600, "1 hour"),
        (3 * 3600 + 5 * 60 + 7, "3 hours 5 minutes"),
        (2 * 86400 + 30, "2 days"),
    ],
)
def test_ages_read_in_words(seconds, text):
    assert humanize.age(seconds) == text


def test_durations():
    assert humanize.duration(0.0123) == "12 ms"
    assert humanize.duration(2.345) == "2.3 s"
    assert humanize.duration(125) == "2 minutes 5 seconds"


# -- the pages ----------------------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db


@pytestmark_db
def test_dashboard_shows_each_queue_with_figures_and_charts(admin_client, frozen_clock):
    taskqueue.add(url="/echo")
    taskqueue.add(url="/boom", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0))
    run_tasks("default")
    taskqueue.add(url="/echo")
    frozen_clock.advance(90)  # the waiting task is 90 seconds old
    Queue("pull-queue").add(Task(b"p", method="PULL"))
    response = admin_client.get(DASHBOARD_URL)
    assert response.status_code == 200
    queues = {q.name: q for q in response.context["queues"]}
    assert set(queues) == set(all_queue_configs())
    default = queues["default"]
    assert (default.executed_last_hour, default.failed_last_hour) == (2, 1)
    assert default.waiting == 1
    assert default.oldest_age == "1 minute 30 seconds"
    assert default.rate.endswith("/ 5/s")
    assert queues["paused"].paused
    assert queues["throttled"].in_flight == "0 / 1"
    content = response.content.decode()
    assert 'class="tq-chart"' in content
    assert "tq-failed" in content and "tq-succeeded" in content
    assert "dashboard.js" in content  # the live refresh
    assert queue_url("default") in content
    fragment = admin_client.get(DASHBOARD_URL + "?fragment=1").content.decode()
    assert fragment.lstrip().startswith('<div class="module tq-module">')
    assert "<html" not in fragment


@pytestmark_db
def test_dashboard_queries_do_not_grow_with_the_queues(admin_client, django_assert_num_queries):
    admin_client.get(DASHBOARD_URL)  # session and user are cached from here on
    stats = MinuteStats("default")
    for name in all_queue_configs():
        stats.record(name, "succeeded", 0.1)
    stats.flush()
    stats.sample()
    # Session, user, then: queue states, live rows, the hour by minute, the day by hour.
    with django_assert_num_queries(6):
        admin_client.get(DASHBOARD_URL + "?fragment=1")
    with django_assert_num_queries(4):
        overview()
    with django_assert_num_queries(4):
        overview(["default"])


@pytestmark_db
def test_backlog_chart_uses_the_minute_samples(frozen_clock):
    taskqueue.add(url="/echo")
    taskqueue.add(url="/echo")
    MinuteStats("default").sample()
    frozen_clock.advance(60)
    [default] = overview(["default"])
    assert default.backlog[-2:] == [2, None]
    assert 'data-peak="2"' in default.backlog_chart()


@pytestmark_db
def test_hour_chart_sums_the_minutes(frozen_clock):
    stats = MinuteStats("default")
    for _ in range(3):
        stats.record("default", "succeeded", 0.1)
        frozen_clock.advance(60)
    stats.record("default", "failed", 0.1)
    stats.flush()
    [default] = overview(["default"])
    assert sum(s.executed for s in default.hours) == 4
    assert default.hours[-1].executed + default.hours[-2].executed == 4
    assert sum(s.failed for s in default.hours) == 1


@pytestmark_db
def test_queue_page_groups_errors_and_lists_the_slowest(admin_client, frozen_clock):
    for _ in range(2):
        taskqueue.add(url="/boom")
    taskqueue.add(url="/nowhere-at-all")
    taskqueue.add(url="/echo")
    run_tasks("default")
    response = admin_client.get(queue_url("default"))
    assert response.status_code == 200
    errors = {e["last_retry_reason"]: e["tasks"] for e in response.context["errors"]}
    assert errors == {"builtins.RuntimeError": 2, "HTTP 404": 1}
    assert [t.name for t in response.context["slowest"]] == list(
        TaskRecord.objects.filter(state=TaskState.SUCCEEDED).values_list("name", flat=True)
    )
    content = response.content.decode()
    assert "builtins.RuntimeError" in content
    assert "among its last 10000 claims at most" in content
    assert "tq-chart" in content
    assert admin_client.get(queue_url("no-such-queue")).status_code == 404
    fragment = admin_client.get(queue_url("default") + "?fragment=1").content.decode()
    assert "<html" not in fragment and "tq-errors" in fragment


@pytestmark_db
def test_slowest_tasks_come_from_the_last_claims_of_the_hour(frozen_clock):
    # Six finished tasks: claimed 70, 50, 40, 30, 20 and 10 minutes ago, the older the slower.
    tasks = [taskqueue.add(url="/echo") for _ in range(6)]
    run_tasks("default")
    now = frozen_clock.now()
    for i, task in enumerate(tasks):
        leased_at = now - datetime.timedelta(minutes=[70, 50, 40, 30, 20, 10][i])
        TaskRecord.objects.filter(name=task.name).update(
            leased_at=leased_at, finished_at=leased_at + datetime.timedelta(seconds=10 - i)
        )
    names = [t.name for t in tasks]
    # The hour's claims, slowest first; the one claimed 70 minutes ago is out of the hour.
    assert [r.name for r in slowest_tasks("default", now)] == names[1:]
    assert [r.run_display for r in slowest_tasks("default", now, limit=2)] == ["9 s", "8 s"]
    # Only the last `scan` claims are sorted: a busy queue's page reads a bounded number of rows.
    assert [r.name for r in slowest_tasks("default", now, scan=3)] == names[3:]
    assert [r.name for r in slowest_tasks("default", now, scan=5)] == names[1:]
    assert [r.name for r in slowest_tasks("default", now, scan=50)] == names[1:]


@pytestmark_db
@pytest.mark.parametrize("url", [DASHBOARD_URL, queue_url("pull-queue")])
def test_actions_from_the_dashboard(admin_client, url):
    QueueState.objects.filter(name="pull-queue").delete()
    response = admin_client.post(url, {"action": "pause", "queue": "pull-queue"}, follow=True)
    assert response.status_code == 200
    assert Queue("pull-queue").is_paused()
    assert "Paused 1 queue(s)." in response.content.decode()
    admin_client.post(url, {"action": "resume", "queue": "pull-queue"})
    assert not Queue("pull-queue").is_paused()
    Queue("pull-queue").add(Task(b"p", method="PULL"))
    admin_client.post(url, {"action": "purge", "queue": "pull-queue"})
    assert not TaskRecord.objects.filter(queue_name="pull-queue", state=TaskState.QUEUED).exists()


@pytestmark_db
def test_retry_failed_and_run_now_from_the_dashboard(admin_client, frozen_clock):
    taskqueue.add(url="/boom", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0))
    run_tasks("default")
    admin_client.post(DASHBOARD_URL, {"action": "retry_failed", "queue": "default"})
    assert TaskRecord.objects.get().state == TaskState.QUEUED
    taskqueue.add(url="/echo", countdown=3600)
    admin_client.post(DASHBOARD_URL, {"action": "run_now", "queue": "default"})
    assert TaskRecord.objects.filter(eta__gt=frozen_clock.now()).count() == 0


@pytestmark_db
def test_viewers_see_the_dashboard_without_actions(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_queuestate"))
    client.force_login(user)
    response = client.get(DASHBOARD_URL)
    assert response.status_code == 200
    assert "tq-button" not in response.content.decode()
    response = client.post(DASHBOARD_URL, {"action": "pause", "queue": "default"})
    assert response.status_code == 403
    assert not Queue("default").is_paused()
    nobody = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(nobody)
    assert client.get(DASHBOARD_URL).status_code == 403


@pytestmark_db
def test_changelist_links_to_the_dashboard_and_reads_rates(admin_client):
    QueueState.objects.create(name="default", enforced_rate=0.000046803324912091466)
    content = admin_client.get(reverse("admin:django_taskqueue_queuestate_changelist")).content
    assert DASHBOARD_URL.encode() in content
    assert b"0.17/h" in content
    assert b"0.0000468" not in content


def test_minute_of():
    at = datetime.datetime(2025, 1, 1, 12, 34, 56, 789, tzinfo=datetime.UTC)
    assert minute_of(at) == datetime.datetime(2025, 1, 1, 12, 34, tzinfo=datetime.UTC)


def test_template_filters():
    from django.template import Context, Template

    text = Template("{% load taskqueue %}{{ r|tq_rate }} {{ a|tq_age }}").render(
        Context({"r": 0.000046803324912091466, "a": 190})
    )
    assert text == "0.17/h 3 minutes 10 seconds"


@pytestmark_db
def test_queue_page_queries_are_pinned(admin_client, django_assert_num_queries):
    taskqueue.add(url="/echo")
    run_tasks("default")
    admin_client.get(queue_url("default"))
    # Session, user; states, live rows, the hour, the day; errors by reason; slowest tasks
    # (the claim time the scan starts at, then the tasks).
    with django_assert_num_queries(9):
        admin_client.get(queue_url("default") + "?fragment=1")
