"""Fixtures for the whole suite: a frozen clock, and the environment of worker subprocesses."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from django.db import connections

from django_taskqueue import clock

REPO_ROOT = Path(__file__).resolve().parent.parent

# Where frozen_clock starts: a fixed instant, so failures reproduce.
FROZEN_AT = datetime.datetime(2025, 1, 15, 12, 0, tzinfo=datetime.UTC)


class FrozenClock:
    """A handle on django_taskqueue.clock while a test keeps it frozen."""

    def __init__(self, at: datetime.datetime) -> None:
        self.set(at)

    def now(self) -> datetime.datetime:
        """Return the frozen time (aware, UTC)."""
        return clock.now()

    def set(self, at: datetime.datetime) -> None:
        """Freeze the clock at `at` (aware)."""
        clock.freeze(at)

    def freeze_monotonic(self) -> None:
        """Freeze clock.monotonic() too, so `advance` moves the worker's intervals."""
        clock.freeze_monotonic(True)

    def advance(self, seconds: float | datetime.timedelta) -> datetime.datetime:
        """Move the clock forward and return the new time."""
        if isinstance(seconds, datetime.timedelta):
            seconds = seconds.total_seconds()
        return clock.advance(seconds)


#: Modules whose every test starts processes, a browser or a server.
SLOW_MODULES = frozenset(
    {
        "test_admin_browser",
        "test_concurrency",
        "test_example_project",
        "test_rest_worker",
        "test_worker_process",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `slow` the tests that start other processes: those modules, and child_env users."""
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        if name in SLOW_MODULES or "child_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def frozen_clock() -> Iterator[FrozenClock]:
    """Freeze django_taskqueue.clock at FROZEN_AT for the test; always unfreeze afterwards."""
    frozen = FrozenClock(FROZEN_AT)
    try:
        yield frozen
    finally:
        clock.freeze(None)
        clock.freeze_monotonic(False)


_URL_SCHEMES = {
    "sqlite3": "sqlite",
    "spatialite": "spatialite",
    "postgresql": "postgres",
    "postgis": "postgis",
    "mysql": "mysql",
}


def child_database_url(settings_dict: dict[str, Any]) -> str:
    """Return a DATABASE_URL naming the database `settings_dict` points at now (the test one)."""
    engine = settings_dict["ENGINE"].rsplit(".", 1)[-1]
    name = str(settings_dict["NAME"])
    if engine in ("sqlite3", "spatialite"):
        if name == ":memory:" or "mode=memory" in name:
            pytest.fail("Subprocesses cannot share an in-memory SQLite database: use a file.")
        return f"{_URL_SCHEMES[engine]}:///{Path(name).resolve()}"
    # Keep the parent's URL (credentials, host, query options) and swap in the test database.
    parent_url = os.environ.get("DATABASE_URL")
    if parent_url:
        return urlunsplit(urlsplit(parent_url)._replace(path="/" + quote(name)))
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    userinfo = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    host = settings_dict.get("HOST") or ""
    return f"{_URL_SCHEMES[engine]}://{userinfo}{host}{port}/{quote(name)}"


@pytest.fixture
def child_env(transactional_db: None) -> dict[str, str]:
    """Return os.environ for a subprocess that must use this test's database.

    DATABASE_URL names the test database (for SQLite, its file), DJANGO_SETTINGS_MODULE is
    tests.settings and the repository is on PYTHONPATH, so `python -m django ...` or
    `manage.py ...` in a child sees what the test committed. The test runs with
    transactional_db: data inside an open test transaction would be invisible to a child.
    """
    env = os.environ.copy()
    env["DATABASE_URL"] = child_database_url(connections["default"].settings_dict)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # The child's DATABASE_URL already names the test database; it creates no test database.
    env.pop("TEST_DATABASE_NAME", None)
    return env


def run_burst_worker(env: dict[str, str], *queues: str) -> None:
    """Run `runtaskworker --burst` in a child process on the test database; fail if it fails."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "django", "runtaskworker", "--burst"]
    for queue in queues:
        command += ["--queue", queue]
    worker = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert worker.returncode == 0, worker.stderr


def claim_now(queue_name: str, clock_source: Any, max_tasks: int = 100, worker_id: str = "w1"):
    """Claim due tasks of the push queue `queue_name` as a worker would, at `clock_source.now()`."""
    from django_taskqueue.dispatch.claim import claim
    from django_taskqueue.queues import get_queue_config

    return claim(
        "default",
        get_queue_config(queue_name),
        now=clock_source.now(),
        worker_id=worker_id,
        max_tasks=max_tasks,
        lease_seconds=60,
    )


class Recorder:
    """Reads the JSON lines that tests/handlers.py views append."""

    def __init__(self, path):
        self.path = path

    def entries(self, event=None):
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [r for r in rows if event is None or r.get("event", "finished") == event]


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    from .handlers import RECORD_ENV

    path = tmp_path / "record.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(path))
    return Recorder(path)


def row(name, queue="default"):
    """Return the task row `name` of `queue`."""
    from django_taskqueue.models import TaskRecord

    return TaskRecord.objects.get(queue_name=queue, name=name)
