"""The example project's scenarios end to end: its web server, its worker and the consumer.

Each scenario runs against `runserver` and `runtaskworker` subprocesses on a temporary SQLite
database, as `scripts/demo.sh` runs them. The browser tests take the screenshots of
docs/images/ (Debian's chromium driven by Playwright); to refresh them:

    TASKQUEUE_SCREENSHOTS=docs/images .venv/bin/python -m pytest tests/test_example_project.py
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from example_project.demo import parsing

from .admin.test_admin_browser import CHROMIUM, CHROMIUM_ARGS
from .conftest import REPO_ROOT

CONSUMER = REPO_ROOT / "examples" / "leaderboard_consumer.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Example:
    url: str
    env: dict[str, str]
    logs: Path
    client: httpx.Client

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, str(REPO_ROOT / "manage.py"), *args],
            env=self.env,
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def csrf(self, path: str) -> str:
        page = self.client.get(path).text
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Iterator[Example]:
    logs = tmp_path_factory.mktemp("example")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{logs / 'example.sqlite3'}",
        # The uploads queue's `parser` target: this runserver, reached over HTTP.
        "PARSER_URL": url,
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, str(REPO_ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=REPO_ROOT)
    files = [open(logs / name, "w") for name in ("web.log", "worker.log")]
    processes = [
        subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
            cwd=REPO_ROOT,
            stdout=files[0],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [*manage, "runtaskworker", "--poll-interval", "0.1"],
            env=env,
            cwd=REPO_ROOT,
            stdout=files[1],
            stderr=subprocess.STDOUT,
        ),
    ]
    client = httpx.Client(base_url=url, follow_redirects=True, timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/")
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or processes[0].poll() is not None:
                pytest.fail((logs / "web.log").read_text())
            time.sleep(0.2)
    try:
        yield Example(url=url, env=env, logs=logs, client=client)
    finally:
        client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for file in files:
            file.close()


def eventually(read: Callable[[], Any], done: Callable[[Any], bool], seconds: float = 60) -> Any:
    """Poll `read()` until `done` holds of its value, and return the value."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {seconds} s: {value!r}")
        time.sleep(0.2)


def upload(example: Example, name: str, data: bytes) -> str:
    """Upload a file through the form; return the URL of its page."""
    answer = example.client.post(
        "/uploads/",
        data={"csrfmiddlewaretoken": example.csrf("/uploads/")},
        files={"file": (name, data, "text/csv")},
    )
    assert answer.status_code == 200, answer.text
    assert re.fullmatch(r".*/uploads/\d+/", str(answer.url)), answer.url
    return answer.url.path


def test_an_upload_is_parsed_in_the_background(example):
    data = parsing.sample_sales(rows=3000)
    page = upload(example, "sales.csv", data)

    ready = eventually(
        lambda: example.client.get(page + "isReady").json(), lambda answer: answer["isReady"]
    )
    assert ready["status"] == "PARSED", ready
    assert ready["result"] == parsing.parse_sales(data)
    assert ready["result"]["rows"] == 3000
    # The queue's target is a deployment reached over HTTP: here, the web server itself.
    assert "POST /tasks/parse-upload/ HTTP/1.1" in (example.logs / "web.log").read_text()
    assert "sales.csv" in example.client.get("/uploads/").text


def test_an_upload_that_cannot_be_parsed_fails_with_the_reason(example):
    page = upload(example, "broken.csv", parsing.sample_sales(rows=3000, broken_line=1234))

    ready = eventually(
        lambda: example.client.get(page + "isReady").json(), lambda answer: answer["isReady"]
    )
    assert ready == {
        "isReady": True,
        "status": "FAILED",
        "result": None,
        "error": "line 1234: units 'twelve' is not a whole number",
    }


def test_the_overview_links_each_scenario_and_shows_the_queues(example):
    page = example.client.get("/")
    assert page.status_code == 200
    for link in ("/uploads/", "/leaderboard/", "/callables/", "/admin/"):
        assert f'href="{link}"' in page.text
    for queue in ("uploads", "scores", "callables"):
        assert f"<td>{queue}</td>" in page.text
    assert example.client.get("/taskqueue/api/schema/").status_code == 200


def test_the_parse_handler_refuses_requests_from_outside_the_queue(example):
    forged = example.client.post(
        "/tasks/parse-upload/", data={"upload": "1"}, headers={"X-AppEngine-QueueName": "uploads"}
    )
    assert forged.status_code == 403


def test_the_leaderboard_is_fed_by_a_pull_queue_and_its_consumer(example):
    token = example.manage("setupdemo").strip()
    csrf = example.csrf("/leaderboard/")
    answer = example.client.post("/leaderboard/", data={"csrfmiddlewaretoken": csrf, "random": "1"})
    assert "Added 200 score events." in answer.text
    example.client.post(
        "/leaderboard/",
        data={"csrfmiddlewaretoken": csrf, "game": "chess", "player": "zed", "points": "1000"},
    )
    assert example.client.get("/leaderboard/data.json").json()["waiting"] == 201

    result = subprocess.run(
        [
            sys.executable,
            str(CONSUMER),
            "--url",
            f"{example.url}/taskqueue/api/",
            "--token",
            token,
            "--max-tasks",
            "50",
            "--exit-when-empty",
        ],
        env={key: value for key, value in os.environ.items() if not key.startswith("DJANGO")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    batches = [line for line in result.stdout.splitlines() if line.startswith("game ")]
    sizes = [int(line.split(": ")[1].split()[0]) for line in batches]
    assert sum(sizes) == 201 and max(sizes) <= 50, result.stdout
    assert "done: 201 tasks" in result.stdout

    board = example.client.get("/leaderboard/data.json").json()
    assert board["waiting"] == 0
    assert set(board["games"]) <= {"chess", "snake", "tetris"}
    assert board["games"]["chess"][0] == {"player": "zed", "points": 1000, "events": 1}
    events = sum(row["events"] for rows in board["games"].values() for row in rows)
    assert events == 201


def test_the_consumer_refuses_a_user_the_acl_does_not_name(example):
    other = example.manage(
        "shell",
        "-v0",
        "-c",
        "from django.contrib.auth.models import User; from rest_framework.authtoken.models "
        "import Token; print(Token.objects.get_or_create(user=User.objects.get_or_create("
        "username='stranger', email='stranger@example.com')[0])[0].key)",
    ).strip()
    result = subprocess.run(
        [sys.executable, str(CONSUMER), "--url", f"{example.url}/taskqueue/api/"]
        + ["--token", other, "--exit-when-empty"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "HTTP 403 permission_denied" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

    # Nor may that user report totals; the consumer's user may, with a well-formed body only.
    totals = {"game": "chess", "totals": {"mallory": 10**6}}
    refused = example.client.post(
        "/leaderboard/totals/", json=totals, headers={"Authorization": f"Token {other}"}
    )
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    consumer = {"Authorization": f"Token {example.manage('setupdemo').strip()}"}
    for bad in [[], {"game": "chess"}, {"game": "chess", "totals": {"ada": "many"}}]:
        answer = example.client.post("/leaderboard/totals/", json=bad, headers=consumer)
        assert answer.status_code == 400 and answer.json()["code"] == "invalid", bad


def add_call(example: Example, kind: str, text: str, countdown: int = 0) -> str:
    answer = example.client.post(
        "/callables/",
        data={
            "csrfmiddlewaretoken": example.csrf("/callables/"),
            "kind": kind,
            "text": text,
            "countdown": str(countdown),
        },
    )
    return re.search(r"its id is (callables:[\w-]+)", answer.text).group(1)


def test_callables_run_and_their_results_are_read_by_id(example):
    calls = {
        "function": add_call(example, "function", "a b a"),
        "raises": add_call(example, "raises", "x"),
        "method": add_call(example, "method", "10 15.5"),
        "instance": add_call(example, "instance", "world"),
        "django-task": add_call(example, "django-task", "world"),
        "later": add_call(example, "function", "later", countdown=3600),
    }

    def result(result_id: str) -> dict:
        return example.client.get(f"/callables/{result_id}.json").json()

    finished = {
        kind: eventually(
            lambda result_id=result_id: result(result_id),
            lambda r: r["status"] in ("SUCCESSFUL", "FAILED"),
        )
        for kind, result_id in calls.items()
        if kind != "later"
    }
    assert finished["function"]["value"] == {"a": 2, "b": 1}
    assert finished["method"]["value"] == "Ada: 30.60 (20% VAT)"
    assert finished["instance"]["value"] == "Hello, world!"
    assert finished["django-task"]["value"] == "WORLD!"
    failed = finished["raises"]
    assert failed["status"] == "FAILED"
    assert failed["attempts"] == 2  # the callables queue retries once
    assert failed["error"] == "ZeroDivisionError: division by zero"
    assert result(calls["later"]) == {
        "id": calls["later"],
        "status": "READY",
        "attempts": 0,
        "value": None,
        "error": None,
    }
    page = example.client.get("/callables/").text
    assert calls["later"] in page and "Hello, world!" in page
    assert example.client.get("/callables/callables:no-such-task.json").status_code == 404


# Screenshots of the scenario pages, in a real browser ------------------------------------------


@pytest.fixture
def browser(tmp_path) -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        page = launched.new_page(viewport={"width": 1000, "height": 700})
        try:
            yield page
        finally:
            launched.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    """Save a screenshot of the page; under TASKQUEUE_SCREENSHOTS (a folder) too, when set."""
    folder = Path(os.environ.get("TASKQUEUE_SCREENSHOTS") or tmp_path)
    page.screenshot(path=str(folder / name), full_page=True)


def test_browser_upload_page_shows_the_parsed_result(example, browser, tmp_path):
    data = tmp_path / "sales.csv"
    data.write_bytes(parsing.sample_sales(rows=3000))
    browser.goto(f"{example.url}/uploads/")
    browser.set_input_files("#id_file", str(data))
    browser.click("button[type=submit]")
    browser.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert browser.inner_text("#status") == "Parsed"
    assert "3,000" in browser.inner_text("#rows")
    screenshot(browser, "example-upload.png", tmp_path)


def test_browser_leaderboard_updates_live(example, browser, tmp_path):
    token = example.manage("setupdemo").strip()
    browser.goto(f"{example.url}/leaderboard/")
    browser.click("button[name=random]")
    browser.wait_for_selector("text=Added 200 score events.")
    subprocess.run(
        [sys.executable, str(CONSUMER), "--url", f"{example.url}/taskqueue/api/"]
        + ["--token", token, "--exit-when-empty"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # The page refreshes itself: no reload.
    browser.wait_for_function(
        "document.getElementById('waiting').textContent === '0'", timeout=30_000
    )
    browser.wait_for_selector("#boards section h2", timeout=30_000)
    screenshot(browser, "example-leaderboard.png", tmp_path)


def test_browser_callables_page_shows_results_and_failures(example, browser, tmp_path):
    browser.goto(f"{example.url}/callables/")
    for kind, text, countdown in [
        ("raises", "x", "0"),
        ("instance", "world", "0"),
        ("method", "10 15.5", "0"),
        ("function", "the quick fox jumps over the lazy fox", "0"),
        ("function", "run me in an hour", "3600"),
    ]:
        browser.check(f"input[name=kind][value={kind}]")
        browser.fill("#id_text", text)
        browser.fill("#id_countdown", countdown)
        browser.click("button[type=submit]")
        browser.wait_for_selector(".messages")
    browser.wait_for_function(
        "[...document.querySelectorAll('#recent .status')].filter("
        "cell => ['SUCCESSFUL', 'FAILED'].includes(cell.textContent)).length >= 4",
        timeout=60_000,
    )
    statuses = browser.locator("#recent .status").all_inner_texts()
    assert statuses.count("READY") >= 1 and "FAILED" in statuses
    assert "waiting…" in browser.inner_text("#recent")  # the call with a countdown
    assert "ZeroDivisionError: division by zero" in browser.inner_text("#recent")
    screenshot(browser, "example-callables.png", tmp_path)
