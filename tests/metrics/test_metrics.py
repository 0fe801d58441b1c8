"""The metrics endpoint: scraped as Prometheus would, parsed with prometheus_client's parser."""

import pytest
from django.contrib.auth.models import Permission
from prometheus_client.parser import text_string_to_metric_families

from django_taskqueue import taskqueue
from django_taskqueue.dispatch.minute_stats import MinuteStats
from django_taskqueue.metrics.exposition import collect, render
from django_taskqueue.models import QueueState
from django_taskqueue.queues import all_queue_configs
from django_taskqueue.taskqueue import Queue, Task
from django_taskqueue.testing import run_tasks

pytestmark = pytest.mark.django_db

URL = "/taskqueue/metrics/"
TOKEN = "a-long-random-token-for-the-scraper"


def scrape(client, **headers):
    response = client.get(URL, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {}
    for family in text_string_to_metric_families(response.content.decode()):
        families[family.name] = {
            sample.labels["queue"]: sample.value for sample in family.samples
        } | {"__type__": family.type}
    return families


def test_scrape_and_parse_every_queue(admin_client, frozen_clock):
    taskqueue.add(url="/echo")
    taskqueue.add(url="/boom", retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0))
    taskqueue.add(url="/boom")
    run_tasks("default")  # one success, one failure, one retry
    taskqueue.add(url="/echo")
    frozen_clock.advance(30)
    Queue("pull-queue").add([Task(b"a", method="PULL"), Task(b"b", method="PULL")])
    Queue("pull-queue").lease_tasks(60, 1)
    QueueState.objects.filter(name="default").update(enforced_rate=2.5)

    families = scrape(admin_client)
    waiting = families["taskqueue_tasks_waiting"]
    assert waiting["__type__"] == "gauge"
    assert set(waiting) - {"__type__"} == set(all_queue_configs())
    assert waiting["default"] == 2  # the new task and the retry, due after its backoff
    assert waiting["pull-queue"] == 1
    assert families["taskqueue_tasks_leased"]["pull-queue"] == 1
    assert "pull-queue" not in families["taskqueue_tasks_in_flight"]
    assert families["taskqueue_tasks_in_flight"]["default"] == 0
    assert families["taskqueue_oldest_task_age_seconds"]["default"] == 30
    assert families["taskqueue_enforced_rate_tasks_per_second"]["default"] == 2.5
    assert families["taskqueue_rate_tasks_per_second"]["default"] == 5
    assert families["taskqueue_max_concurrent_requests"]["throttled"] == 1
    assert families["taskqueue_queue_paused"]["paused"] == 1
    assert families["taskqueue_queue_paused"]["default"] == 0
    # Counters: the parser drops the _total suffix from the family's name.
    executed = families["taskqueue_tasks_executed"]
    assert executed["__type__"] == "counter"
    assert executed["default"] == 3
    assert families["taskqueue_tasks_failed"]["default"] == 1
    assert families["taskqueue_tasks_retried"]["default"] == 1
    assert families["taskqueue_task_run_seconds"]["default"] > 0
    assert executed["fast"] == 0


def test_counters_only_grow(admin_client, frozen_clock, settings):
    stats = MinuteStats("default")
    stats.record("default", "succeeded", 0.1)
    stats.flush()
    first = scrape(admin_client)["taskqueue_tasks_executed"]["default"]
    frozen_clock.advance(30 * 86400)  # every minute row is past its retention
    from django_taskqueue.dispatch.minute_stats import MinuteStatsPruner

    MinuteStatsPruner("default", 300).run(frozen_clock.now())
    stats.record("default", "succeeded", 0.1)
    stats.flush()
    assert scrape(admin_client)["taskqueue_tasks_executed"]["default"] == first + 1


def test_bearer_token(client, settings):
    settings.TASKQUEUE = {**settings.TASKQUEUE, "METRICS_TOKEN": TOKEN}
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    families = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert "default" in families["taskqueue_tasks_waiting"]


def test_no_token_configured_refuses_every_token(client):
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer anything").status_code == 403


def test_session_needs_staff_and_the_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_queuestate"))
    scrape(client)
    user.is_staff = False
    user.save()
    assert client.get(URL).status_code == 403


def test_three_queries_whatever_the_queues(django_assert_num_queries):
    with django_assert_num_queries(3):
        collect()


def test_label_values_are_escaped():
    from django_taskqueue.metrics.exposition import Family

    text = render([Family("taskqueue_x", "gauge", "X.", [('a"b\\c\nd', 1.5)])])
    [family] = text_string_to_metric_families(text)
    assert family.samples[0].labels["queue"] == 'a"b\\c\nd'
    assert family.samples[0].value == 1.5
