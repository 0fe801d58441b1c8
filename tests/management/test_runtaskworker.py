"""`manage.py runtaskworker` as a user meets it: its help, its argument errors, its last line,
and `--reload` restarting a real worker process when code changes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_taskqueue.management.commands.runtaskworker import Command
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.django_db


def help_text() -> str:
    out = StringIO()
    Command().create_parser("manage.py", "runtaskworker").print_help(out)
    return " ".join(out.getvalue().split())


def test_help_shows_every_default():
    text = help_text().split("options:", 1)[1]
    for option, default in [
        ("--queue", "every push queue"),
        ("--concurrency", "Default: 1."),
        ("--prefetch", "Default: 20,"),
        ("--burst", "Default: off"),
        ("--max-tasks", "Default: no limit."),
        ("--worker-id", "Default: host name"),
        ("--poll-interval", "Default: TASKQUEUE['POLL_INTERVAL_SECONDS'] (1.0)."),
        ("--reload", "Default: off."),
    ]:
        section = text.split(option, 1)[1].split(" --", 1)[0]
        assert default in section, (option, section)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--concurrency", "0"], "--concurrency: must be a whole number, 1 or more (got '0')"),
        (["--prefetch", "x"], "--prefetch: must be a whole number, 1 or more (got 'x')"),
        (["--poll-interval", "0"], "--poll-interval: must be a number of seconds above 0"),
        (["--worker-id", "x" * 65], "--worker-id must be 1 to 64 characters"),
        (["--burst", "--reload"], "--reload and --burst cannot be combined"),
    ],
)
def test_argument_errors_are_sentences(args, message):
    with pytest.raises(CommandError) as raised:
        call_command("runtaskworker", *args)
    assert message in str(raised.value)
    assert "_positive" not in str(raised.value)


def test_last_line_gives_lifetime_totals(caplog):
    Queue("default").add(
        [Task(url="/echo", name=f"t{i}") for i in range(3)] + [Task(url="/boom", name="bad")]
    )
    with caplog.at_level("INFO", logger="django_taskqueue"):
        call_command("runtaskworker", "--burst", "--queue", "default")
    [line] = [r.getMessage() for r in caplog.records if "event=worker_stopped" in r.getMessage()]
    assert re.search(r"attempts=4 succeeded=3 retried=1 failed=0 uptime=\d", line), line


@pytest.mark.django_db(transaction=True)
def test_reload_restarts_the_worker_when_code_changes(child_env, tmp_path):
    """A real `runtaskworker --reload` process restarts when a module it loaded changes.

    The settings module is a file of this test (it imports the suite's settings), so the test
    can change code the worker has loaded without touching the repository.
    """
    settings_file = tmp_path / "reload_settings.py"
    settings_file.write_text("from tests.settings import *  # noqa: F403\n")
    env = {
        **child_env,
        "DJANGO_SETTINGS_MODULE": "reload_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), child_env["PYTHONPATH"]]),
    }
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "django", "runtaskworker", "--reload", "--queue", "default"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def starts() -> int:
            return log.read_text().count("event=worker_started")

        deadline = time.monotonic() + 90
        while starts() < 1:
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        # The reloader compares modification times once a second: change the file (with a
        # later mtime each time) until the worker has started again.
        edits = 0
        while starts() < 2:
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            edits += 1
            settings_file.write_text(settings_file.read_text() + f"EDIT = {edits}\n")
            later = time.time() + edits
            os.utime(settings_file, (later, later))
            time.sleep(1.5)
        text = log.read_text()
        # The first worker stopped cleanly before the restart.
        assert text.index("event=worker_stopped") < text.rindex("event=worker_started")
        # Tasks run in the restarted worker.
        Queue("default").add(Task(url="/echo", name="after-reload"))
        while "task=after-reload" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, 15)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait()


def test_console_lines_read_as_the_standard_formatter_writes_them():
    import logging

    from django_taskqueue.management.commands.runtaskworker import _ConsoleFormatter

    ours = _ConsoleFormatter()
    standard = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for created in (1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.0, 1_700_000_061.5):
        record = logging.LogRecord(
            "django_taskqueue", logging.INFO, __file__, 1, "x=%s", (1,), None
        )
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
