"""The external worker (examples/pull_worker.py) against a live server in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from rest_framework.authtoken.models import Token

from django_taskqueue import inspect

from ..conftest import REPO_ROOT
from .rest_helpers import ACL_QUEUE, add_pull, make_user

WORKER = REPO_ROOT / "examples" / "pull_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server_url(child_env: dict[str, str]) -> Iterator[str]:
    """Serve the test project with runserver in a subprocess, on the test's database."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=child_env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/taskqueue/api/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "schema/", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"runserver did not start:\n{server.communicate()[0]}")
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def test_the_worker_imports_only_the_standard_library_and_httpx():
    imports = [
        line.split()[1].split(".")[0]
        for line in WORKER.read_text().splitlines()
        if line.startswith(("import ", "from "))
    ]
    assert set(imports) - set(sys.stdlib_module_names) == {"httpx"}


@pytest.mark.django_db(transaction=True)
def test_worker_drains_a_tagged_queue(live_server_url):
    token = Token.objects.create(user=make_user("worker", "consumer@example.com"))
    names = {f"report-{i:02}" for i in range(25)}
    for name in sorted(names):
        add_pull(ACL_QUEUE, payload=f"payload of {name}".encode(), name=name, tag="reports")
    for i in range(3):
        add_pull(ACL_QUEUE, name=f"other-{i}", tag="other")

    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO")}
    result = subprocess.run(
        [
            sys.executable,
            str(WORKER),
            "--url",
            live_server_url,
            "--token",
            token.key,
            "--queue",
            ACL_QUEUE,
            "--tag",
            "reports",
            "--max-tasks",
            "10",
            "--lease-seconds",
            "60",
            # Every lease has less than an hour left: each task's lease is extended once.
            "--extend-margin",
            "3600",
            "--exit-when-empty",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    processed = {line.split()[1] for line in lines if line.startswith("processed ")}
    assert processed == names
    assert "processed report-07 payload of report-07" in lines
    assert sum(line.startswith("extended ") for line in lines) == 25
    # Deleted in batches, one request per leased batch of 10.
    assert [line for line in lines if line.startswith("deleted ")] == [
        "deleted 10",
        "deleted 10",
        "deleted 5",
    ]
    assert lines[-1] == "done: 25 tasks"
    assert inspect.list_tasks(ACL_QUEUE, tag="reports") == []
    assert [t.name for t in inspect.list_tasks(ACL_QUEUE)] == ["other-0", "other-1", "other-2"]


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO")}
    return subprocess.run(
        [sys.executable, str(WORKER), *args, "--exit-when-empty"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_worker_stops_on_an_api_error_with_its_code_and_detail(live_server_url):
    stranger = Token.objects.create(user=make_user("stranger", "stranger@example.com"))
    add_pull(ACL_QUEUE, name="kept", tag="reports")

    refused = run_worker("--url", live_server_url, "--token", stranger.key, "--queue", ACL_QUEUE)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith(
        f"error: POST {live_server_url}queues/{ACL_QUEUE}/lease/: HTTP 403 permission_denied: "
    ), refused.stderr

    unknown = run_worker("--url", live_server_url, "--token", "not-a-token", "--queue", ACL_QUEUE)
    assert unknown.returncode == 1
    assert "HTTP 401 authentication_failed: Invalid token." in unknown.stderr, unknown.stderr
    assert [t.name for t in inspect.list_tasks(ACL_QUEUE)] == ["kept"]


def test_worker_stops_when_the_server_cannot_be_reached():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/taskqueue/api/"
        result = run_worker("--url", url, "--token", "t", "--queue", ACL_QUEUE)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach {url}: "), result.stderr
    assert "Traceback" not in result.stderr
