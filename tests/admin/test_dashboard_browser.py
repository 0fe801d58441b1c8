"""The dashboard in a real browser, with a real worker running tasks: light and dark themes.

Screenshots go to the test's temporary directory, or to TASKQUEUE_TEST_SCREENSHOTS_DIR when set
(`docs/images` refreshes the documentation's pictures).
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_taskqueue import clock, taskqueue
from django_taskqueue.dispatch.minute_stats import MINUTE, MinuteStats, minute_of, upsert
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT
from .test_admin_browser import browser_page  # noqa: F401 (a fixture)

DARK_LINK_FG = "rgb(129, 212, 250)"  # the admin's --link-fg in its dark theme
LIGHT_LINK_FG = "rgb(65, 120, 147)"


def screenshots_dir(tmp_path: Path) -> Path:
    target = os.environ.get("TASKQUEUE_TEST_SCREENSHOTS_DIR")
    path = Path(target) if target else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_history(queue_name: str, busy: int, backlog: int) -> None:
    """A day of counts and an hour of backlog samples, as workers would have written them."""
    stats = MinuteStats("default")
    now = clock.now()
    samples = []
    for minutes_ago in [*range(1, 60), *range(60, 24 * 60, 7)]:
        at = now - datetime.timedelta(minutes=minutes_ago)
        wave = busy + int(busy * 0.6 * ((minutes_ago // 9) % 5 - 2) / 2)
        for i in range(max(wave, 1) // 4):
            status = "failed" if i % 23 == 5 else "retry" if i % 11 == 3 else "succeeded"
            stats.record(queue_name, status, 0.05 + (i % 7) / 20, at=at)
        if minutes_ago < 60:
            waiting = max(0, backlog - abs(30 - minutes_ago) * backlog // 30 + minutes_ago % 4)
            samples.append((queue_name, MINUTE, minute_of(at), 0, 0, 0, 0.0, 0.0, waiting, 0, 0))
    stats.flush()
    upsert("default", samples)


def start_worker(env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runtaskworker", *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def login(page, live_server, next_url):
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "secret-pass")
    page.click("input[type=submit]")


@pytest.mark.django_db(transaction=True)
def test_dashboard_charts_follow_a_running_worker(
    live_server,
    django_user_model,
    browser_page,  # noqa: F811 (the fixture imported above)
    child_env,
    tmp_path,
):
    pictures = screenshots_dir(tmp_path)
    django_user_model.objects.create_superuser("boss", "boss@example.com", "secret-pass")
    seed_history("default", 40, 120)
    seed_history("fooqueue", 12, 30)
    Queue("paused").add([Task(url="/echo") for _ in range(25)])  # a backlog that stays
    Queue("pull-queue").add([Task(b"p", method="PULL") for _ in range(8)])
    Queue("pull-queue").lease_tasks(600, 3)
    Queue("fast").add([Task(url="/echo") for _ in range(30)])
    no_retry = taskqueue.TaskRetryOptions(task_retry_limit=0)
    Queue("fast").add([Task(url="/boom", retry_options=no_retry) for _ in range(3)])

    child_env["TASKQUEUE_TEST_OVERRIDES"] = json.dumps(
        {"POLL_INTERVAL_SECONDS": 0.2, "STATS_FLUSH_INTERVAL_SECONDS": 0.5}
    )
    worker = start_worker(child_env, "--queue", "fast")
    page = browser_page
    try:
        login(page, live_server, "/admin/django_taskqueue/queuestate/dashboard/")
        page.wait_for_selector("#tq-queues")
        # Pictures without the navigation sidebar: the admin remembers it closed.
        page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
        page.reload()
        page.wait_for_selector("#tq-queues")
        # The page refreshes itself: no reload until the worker's counts show.
        page.wait_for_function(
            "() => Number(document.querySelector('tr[data-queue=fast]')"
            ".dataset.executedHour) >= 33",
            timeout=120_000,
        )
        assert int(page.get_attribute("#tq-live", "data-refreshes") or 0) >= 1
        fast = page.locator("tr[data-queue=fast]")
        assert fast.get_attribute("data-failed-hour") == "3"
        assert fast.locator("rect.tq-succeeded").count() >= 1
        assert fast.locator("rect.tq-failed").count() >= 1
        assert "33 run, 0 retried, 3 failed" in fast.inner_text()
        paused = page.locator("tr[data-queue=paused]")
        assert "paused" in paused.inner_text()
        assert "25" in paused.inner_text()
        assert page.locator("tr[data-queue=pull-queue]").inner_text().count("3") >= 1

        bar = fast.locator("rect.tq-succeeded").first
        fill = "el => getComputedStyle(el).fill"
        assert bar.evaluate(fill) == LIGHT_LINK_FG
        page.screenshot(path=str(pictures / "dashboard-light.png"), full_page=True)
        page.emulate_media(color_scheme="dark")
        assert bar.evaluate(fill) == DARK_LINK_FG
        body = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert body != "rgb(255, 255, 255)"
        page.screenshot(path=str(pictures / "dashboard-dark.png"), full_page=True)

        page.emulate_media(color_scheme="light")
        page.click("tr[data-queue=fast] th a")
        page.wait_for_selector("#tq-errors")
        assert "builtins.RuntimeError" in page.inner_text("#tq-errors")
        assert "3" in page.inner_text("#tq-errors")
        assert page.locator("#tq-slowest tbody tr").count() == 10
        page.screenshot(path=str(pictures / "queue-light.png"), full_page=True)

        # An action from the dashboard: pause the fast queue.
        page.goto(f"{live_server.url}/admin/django_taskqueue/queuestate/dashboard/")
        page.locator("tr[data-queue=fast] button[value=pause]").click()
        page.wait_for_selector(".messagelist")
        assert Queue("fast").is_paused()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
        time.sleep(0)
