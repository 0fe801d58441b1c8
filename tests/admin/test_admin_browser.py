"""The admin dashboard in a real browser: Debian's chromium driven by Playwright."""

import os
import shutil

import pytest

from django_taskqueue import taskqueue
from django_taskqueue.models import TaskRecord
from django_taskqueue.taskqueue import Queue, Task

CHROMIUM = os.environ.get("TASKQUEUE_TEST_CHROMIUM", "/usr/bin/chromium")
# As root and on a machine with no network beyond loopback, chromium needs these.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page(monkeypatch, tmp_path):
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's synchronous API runs an event loop in this thread; the ORM calls the test
    # makes between browser steps are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        try:
            yield page
        finally:
            page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
            browser.close()


@pytest.mark.django_db(transaction=True)
def test_dashboard_shows_queues_and_pauses_one(
    live_server, django_user_model, browser_page, tmp_path
):
    screenshots = tmp_path
    django_user_model.objects.create_superuser("boss", "boss@example.com", "secret-pass")
    taskqueue.add(url="/work", payload="browser payload", name="visible-task")
    Queue("pull-queue").add(Task(b"p", method="PULL"))
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_taskqueue/queuestate/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "secret-pass")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")

    default_row = page.locator("#result_list tr", has_text="default").first
    assert "5/s, bucket 5" in default_row.inner_text()
    assert page.locator("#result_list tr", has_text="pull-queue").count() == 1

    page.locator("#result_list tr", has_text="pull-queue").locator("input.action-select").check()
    page.select_option("select[name=action]", "pause")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "Paused 1 queue(s)." in page.inner_text(".messagelist")
    assert Queue("pull-queue").is_paused()
    page.screenshot(path=str(screenshots / "queues.png"), full_page=True)

    pk = TaskRecord.objects.get(name="visible-task").pk
    page.goto(f"{live_server.url}/admin/django_taskqueue/taskrecord/{pk}/change/")
    assert "View task" in page.inner_text("#content")
    assert "browser payload" in page.inner_text("#content")
    assert "/work" in page.inner_text("#content")
