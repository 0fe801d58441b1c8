"""The example project end to end: its web server and its worker, as `scripts/demo.sh` runs them."""

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def example_project(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'example.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, str(REPO_ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=REPO_ROOT)
    port = free_port()
    logs = [open(tmp_path / name, "w") for name in ("web.log", "worker.log")]
    processes = [
        subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
            cwd=REPO_ROOT,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [*manage, "runtaskworker", "--poll-interval", "0.1"],
            env=env,
            cwd=REPO_ROOT,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        ),
    ]
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True, timeout=10)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.get("/")
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail((tmp_path / "web.log").read_text())
            time.sleep(0.2)
    try:
        yield client
    finally:
        client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        for log in logs:
            log.close()


def eventually(client, predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        page = client.get("/").text
        if predicate(page):
            return page
        time.sleep(0.2)
    pytest.fail(f"not reached within {seconds} s:\n{page}")


def test_the_demo_runs_push_callables_and_pull(example_project):
    client = example_project
    page = client.get("/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    answer = client.post(
        "/greet/",
        data={"csrfmiddlewaretoken": token, "name": "Ada", "countdown": "0", "task_name": "ada"},
    )
    assert "Added task ada" in answer.text
    again = client.post(
        "/greet/",
        data={"csrfmiddlewaretoken": token, "name": "Ada", "countdown": "0", "task_name": "ada"},
    )
    assert "Not added" in again.text  # the name is taken: App Engine's de-duplication
    eventually(client, lambda page: "Hello, Ada" in page)

    client.post("/callables/", data={"csrfmiddlewaretoken": token, "text": "a b a"})
    page = eventually(client, lambda page: page.count("SUCCESSFUL") == 2)
    assert "A B A!" in page

    client.post("/pull/add/", data={"csrfmiddlewaretoken": token, "payload": "hi", "tag": "t"})
    leased = client.post("/pull/lease/", data={"csrfmiddlewaretoken": token})
    assert "Leased" in leased.text and "hi" in leased.text

    # The handler is a task view: a request from outside the queue is refused.
    assert client.post("/tasks/greet/", headers={"X-AppEngine-QueueName": "x"}).status_code == 403
    assert client.get("/taskqueue/api/schema/").status_code == 200
