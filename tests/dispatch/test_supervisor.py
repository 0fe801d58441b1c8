"""`runtaskworker --processes N`: real supervisor and worker processes on the test database."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from django_taskqueue.dispatch import supervisor
from django_taskqueue.dispatch.supervisor import Supervisor, resolve_processes
from django_taskqueue.models import TaskRecord, TaskState, WorkerHeartbeat
from django_taskqueue.taskqueue import Queue, Task

from ..conftest import REPO_ROOT

FAST = {
    "DEFAULT_DEADLINE_SECONDS": 2,
    "LEASE_MARGIN_SECONDS": 1,
    "RESCUE_INTERVAL_SECONDS": 0.2,
    "POLL_INTERVAL_SECONDS": 0.1,
}


#: Neither the heartbeat's timeout nor an expired claim lease can rescue a task during a test:
#: what does is the supervisor, which saw its child die.
NO_OTHER_RESCUE = {
    **FAST,
    "DEFAULT_DEADLINE_SECONDS": 120,
    "WORKER_TIMEOUT_SECONDS": 600,
    "HEARTBEAT_INTERVAL_SECONDS": 0.2,
}


def start(env, log, *args, overrides=FAST):
    env = {**env, "TASKQUEUE_TEST_OVERRIDES": json.dumps(overrides)}
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runtaskworker", "--queue", "default", *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def child_pids(log_path):
    text = log_path.read_text(errors="replace")
    return {w: int(p) for w, p in re.findall(r"event=child_started worker=(\S+) pid=(\d+)", text)}


def finish(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def count(state):
    return TaskRecord.objects.filter(state=state).count()


@pytest.mark.django_db(transaction=True)
def test_children_share_the_queue_and_sigterm_stops_them_all(child_env, tmp_path):
    Queue("default").add(
        [Task(method="GET", name=f"t{i}", url="/sleep?seconds=0.1") for i in range(40)]
    )
    log_path = tmp_path / "log"
    with log_path.open("wb") as log:
        proc = start(child_env, log, "--processes", "2", "--prefetch", "1", "--worker-id", "sup")
        try:
            wait_for(lambda: count(TaskState.SUCCEEDED) == 40, what="the queue to drain")
            Queue("default").add(Task(method="GET", name="late", url="/sleep?seconds=1&mark=1"))
            wait_for(lambda: count(TaskState.RUNNING) == 1, what="the late task to start")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            finish(proc)
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output
    assert count(TaskState.RUNNING) == 0
    assert TaskRecord.objects.get(name="late").state == TaskState.SUCCEEDED  # finished first
    workers = set(TaskRecord.objects.values_list("worker_id", flat=True))
    assert workers == {"sup-p1", "sup-p2"}, output
    # One log stream: the children's lines carry their worker id.
    assert "[sup-p1] " in output and "[sup-p2] " in output
    assert "event=supervisor_stopped exit_code=0" in output


@pytest.mark.django_db(transaction=True)
def test_a_killed_child_is_restarted_and_the_queue_still_drains(child_env, tmp_path):
    log_path = tmp_path / "log"
    with log_path.open("wb") as log:
        proc = start(child_env, log, "--processes", "2", "--worker-id", "sup")
        try:
            wait_for(lambda: len(child_pids(log_path)) == 2, what="two children")
            wait_for(
                lambda: log_path.read_text(errors="replace").count("event=worker_started") == 2,
                what="both workers to start",
            )
            os.kill(child_pids(log_path)["sup-p1"], signal.SIGKILL)
            wait_for(lambda: "sup-p1r1" in child_pids(log_path), what="the restart")
            Queue("default").add([Task(method="GET", name=f"t{i}", url="/echo") for i in range(20)])
            wait_for(lambda: count(TaskState.SUCCEEDED) == 20, what="the queue to drain")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            finish(proc)
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output
    assert re.search(r"event=child_died worker=sup-p1 exit_code=-9", output), output
    assert count(TaskState.RUNNING) == 0


def held_by(worker_id):
    return set(
        TaskRecord.objects.filter(state=TaskState.RUNNING, worker_id=worker_id).values_list(
            "id", flat=True
        )
    )


def stop_now(proc):
    """Two SIGTERMs: the children exit without finishing their attempts."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def start_two_holding(env, log, tasks, seconds, *args):
    """Add `tasks` tasks sleeping `seconds`; start `--processes 2` (ids sup-p1, sup-p2) on them,
    each child holding a started attempt and 2 prefetched tasks, rescued by its supervisor
    alone (`NO_OTHER_RESCUE`)."""
    url = f"/sleep?seconds={seconds}"
    Queue("default").add([Task(method="GET", name=f"t{i}", url=url) for i in range(tasks)])
    options = ("--processes", "2", "--prefetch", "2", "--worker-id", "sup", *args)
    return start(env, log, *options, overrides=NO_OTHER_RESCUE)


def kill_once_it_holds_tasks(log_path, worker_id):
    wait_for(lambda: len(held_by(worker_id)) >= 2, what=f"{worker_id} to claim")
    os.kill(child_pids(log_path)[worker_id], signal.SIGKILL)


@pytest.mark.django_db(transaction=True)
def test_a_killed_childs_tasks_are_queued_again_before_it_restarts(child_env, tmp_path):
    log_path = tmp_path / "log"
    with log_path.open("wb") as log:
        proc = start_two_holding(child_env, log, 12, 5)
        try:
            # The child holds an attempt that has started (its heartbeat says so) and
            # prefetched tasks that have not.
            beat = WorkerHeartbeat.objects.filter(worker_id="sup-p1")
            wait_for(lambda: beat.exists() and beat.get().started, what="sup-p1's started task")
            started = set(beat.get().started)
            kill_once_it_holds_tasks(log_path, "sup-p1")
            wait_for(lambda: not held_by("sup-p1"), timeout=10, what="sup-p1's tasks back")
            wait_for(lambda: "sup-p1r1" in child_pids(log_path), what="the restart")
            lost = {t.id: t for t in TaskRecord.objects.filter(lost_count=1)}
        finally:
            stop_now(proc)  # the children's tasks come back too: they exit unfinished
            finish(proc)
    output = log_path.read_text(errors="replace")
    found = re.search(r"event=child_died worker=sup-p1 exit_code=-9 \S+ rescued=(\d+)", output)
    assert found, output
    assert len(lost) == int(found.group(1)) >= 2
    assert started and started <= set(lost)
    for task in lost.values():
        if task.id in started:  # its attempt is charged, as the rescuer does
            assert (task.retry_count, task.last_retry_reason) == (1, "worker lost"), task
        else:  # given back as it was
            assert task.retry_count == 0, task
    assert not WorkerHeartbeat.objects.filter(worker_id="sup-p1").exists()


@pytest.mark.django_db(transaction=True)
def test_a_burst_run_whose_child_is_killed_leaves_no_task_running(child_env, tmp_path):
    log_path = tmp_path / "log"
    with log_path.open("wb") as log:
        proc = start_two_holding(child_env, log, 16, 0.3, "--burst")
        try:
            kill_once_it_holds_tasks(log_path, "sup-p1")
            proc.wait(timeout=60)
        finally:
            finish(proc)
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output
    assert count(TaskState.RUNNING) == 0, output
    # The tasks given back ran on the restarted child; a charged one waits for its retry.
    assert count(TaskState.SUCCEEDED) + count(TaskState.QUEUED) == 16
    assert count(TaskState.QUEUED) <= 1


@pytest.mark.django_db(transaction=True)
def test_a_task_that_kills_its_child_fails_at_the_loss_limit_and_the_supervisor_goes_on(
    child_env, tmp_path
):
    """Each death comes within seconds of the child's start, yet it is no failed start: the
    child held the task. The loss limit ends the task, not the supervisor."""
    Queue("default").add(Task(method="GET", name="poison", url="/die"))
    log_path = tmp_path / "log"
    with log_path.open("wb") as log:
        proc = start(
            child_env,
            log,
            "--processes",
            "1",
            "--worker-id",
            "sup",
            overrides={**NO_OTHER_RESCUE, "MAX_WORKER_LOSSES": 3},
        )
        try:
            poison = TaskRecord.objects.filter(name="poison")
            wait_for(lambda: poison.get().state == TaskState.FAILED, what="the task to fail")
            assert proc.poll() is None, log_path.read_text(errors="replace")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            finish(proc)
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output
    task = poison.get()
    assert (task.lost_count, task.last_error) == (3, "worker lost 3 times")
    assert "supervisor_giving_up" not in output
    # Three deaths (sup-p1, sup-p1r1, sup-p1r2), each restarted at once.
    deaths = re.findall(r"event=child_died worker=(\S+) .* restart_in=(\S+)", output)
    assert deaths == [(w, "0.0s") for w in ("sup-p1", "sup-p1r1", "sup-p1r2")], output


def test_a_child_that_cannot_start_is_given_up_on(monkeypatch, tmp_path):
    monkeypatch.setattr(supervisor, "FIRST_RESTART_PAUSE_SECONDS", 0.01)
    monkeypatch.setattr(supervisor, "MAX_STARTUP_FAILURES", 3)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    out = (tmp_path / "out").open("w+b")
    err = (tmp_path / "err").open("w+b")
    # The child refuses an unknown queue and exits 1 at once, every time.
    sup = Supervisor(1, ["--queue", "no-such-queue"], "bad", stdout=out, stderr=err)
    assert sup.run() == 1
    assert sup.children[0].starts == 3
    err.seek(0)
    assert b"[bad-p1r2] " in err.read()


def test_a_rescue_that_hangs_does_not_hold_the_supervisor(monkeypatch, tmp_path):
    """A database that drops packets would hang the rescue: restarts and the give-up go on."""
    import threading

    monkeypatch.setattr(supervisor, "FIRST_RESTART_PAUSE_SECONDS", 0.01)
    monkeypatch.setattr(supervisor, "MAX_STARTUP_FAILURES", 3)
    monkeypatch.setattr(supervisor, "RESCUE_WAIT_SECONDS", 0.2)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    release = threading.Event()
    asked = []

    def hanging_rescue(worker_id):
        asked.append(worker_id)
        release.wait(60)
        return 0

    out = (tmp_path / "out").open("w+b")
    err = (tmp_path / "err").open("w+b")
    sup = Supervisor(
        1,
        ["--queue", "no-such-queue"],
        "bad",
        stdout=out,
        stderr=err,
        on_child_death=hanging_rescue,
    )
    started = time.monotonic()
    try:
        assert sup.run() == 1
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert asked == ["bad-p1", "bad-p1r1", "bad-p1r2"]
    # Three child starts (each sets Django up) and three waits of 0.2 s, not three of 60 s.
    assert elapsed < 45, elapsed


def test_a_rescue_that_raises_is_logged_and_the_supervisor_goes_on(monkeypatch, caplog):
    monkeypatch.setattr(supervisor, "RESCUE_WAIT_SECONDS", 30)

    def broken_rescue(worker_id):
        raise RuntimeError(f"cannot rescue {worker_id}")

    sup = Supervisor(1, [], "w", on_child_death=broken_rescue)
    started = time.monotonic()
    assert sup._rescue("w-p1") == 0
    assert time.monotonic() - started < 10  # not the 30 s wait: the thread ended
    assert "event=child_rescue_failed worker=w-p1" in caplog.text
    assert "cannot rescue w-p1" in caplog.text
    assert "child_rescue_slow" not in caplog.text


def test_processes_zero_or_auto_is_one_per_core():
    cores = os.cpu_count() or 1
    assert resolve_processes("0") == resolve_processes("auto") == cores
    assert resolve_processes("3") == 3
    with pytest.raises(ValueError, match="1 or more"):
        resolve_processes("-1")
    with pytest.raises(ValueError, match="1 or more"):
        resolve_processes("many")


@pytest.mark.django_db(transaction=True)
def test_children_stop_when_the_supervisor_is_killed(child_env, tmp_path):
    log_path = tmp_path / "log"
    with log_path.open("wb") as log:
        proc = start(child_env, log, "--processes", "2", "--worker-id", "sup")
        try:
            wait_for(lambda: len(child_pids(log_path)) == 2, what="two children")
            pids = list(child_pids(log_path).values())
            proc.kill()
            proc.wait(timeout=10)
            wait_for(lambda: not any(_alive(pid) for pid in pids), what="the children to stop")
        finally:
            finish(proc)
            for pid in child_pids(log_path).values():
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_reload_and_processes_cannot_be_combined():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--reload and --processes"):
        call_command("runtaskworker", "--reload", "--processes", "2")


def test_children_skip_the_checks_the_supervisor_ran():
    from django_taskqueue.management.commands.runtaskworker import _child_args

    options = {
        "concurrency": 2,
        "prefetch": None,
        "verbosity": 1,
        "queues": ["default"],
        "burst": True,
        "max_tasks": None,
        "poll_interval": None,
        "no_cron": False,
    }
    args = _child_args(options)
    assert args.count("--skip-checks") == 1
    assert args[args.index("--concurrency") + 1] == "2"


def test_the_log_pump_copies_whole_lines_each_with_its_prefix():
    """Lines cut by the pipe, many lines in one read and a last line without its newline."""
    import io

    sink = io.BytesIO()
    owner = Supervisor(1, [], "w")
    read_end, write_end = os.pipe()
    pump = owner._pump(os.fdopen(read_end, "rb"), sink, b"[w-p1] ")
    os.write(write_end, b"first li")
    time.sleep(0.05)
    assert sink.getvalue() == b""  # half a line is held until its end comes
    os.write(write_end, b"ne\nsecond\nthird\n")
    burst = b"".join(b"line %d\n" % i for i in range(2000))
    os.write(write_end, burst)
    os.write(write_end, b"no newline at the end")
    os.close(write_end)
    pump.join(timeout=10)
    assert not pump.is_alive()
    lines = sink.getvalue().decode().split("\n")
    assert lines[:3] == ["[w-p1] first line", "[w-p1] second", "[w-p1] third"]
    assert lines[3:2003] == [f"[w-p1] line {i}" for i in range(2000)]
    assert lines[2003:] == ["[w-p1] no newline at the end", ""]
