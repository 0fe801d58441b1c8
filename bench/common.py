"""What every scenario process shares: Django set-up, table resets, seeding, child processes."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PYTHON = sys.executable
MANAGE = str(BENCH_DIR / "manage.py")

PUSH_QUEUE = "bench-push"
PULL_QUEUE = "bench-pull"
HISTORY_PREFIX = "hist-"


def setup(db: str) -> None:
    """Configure Django for the vendor `db` in this process."""
    os.environ["BENCH_DB"] = db
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def child_env(db: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENCH_DB=db,
        DJANGO_SETTINGS_MODULE="bench.settings",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.update(extra)
    return env


def emit(result: dict) -> None:
    """Print the scenario's result as the last line of stdout (read by bench/run.py)."""
    print("RESULT " + json.dumps(result), flush=True)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- tables -----------------------------------------------------------------------------------


def task_table() -> str:
    from django_taskqueue.models import TaskRecord

    return TaskRecord._meta.db_table


def reset_tables(keep_below: int | None = None) -> None:
    """Empty the queue's tables; with `keep_below`, keep the rows of lower id (the history)."""
    from django.db import connection

    from django_taskqueue.models import QueueState

    table = connection.ops.quote_name(task_table())
    states = connection.ops.quote_name(QueueState._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {states}")
        if keep_below is not None:
            cursor.execute(f"DELETE FROM {table} WHERE id >= %s", [keep_below])
        elif connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {table} RESTART IDENTITY")
        elif connection.vendor == "mysql":
            cursor.execute(f"TRUNCATE TABLE {table}")
        else:
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [task_table()])
    analyze()


def analyze() -> None:
    """Refresh the planner's statistics of the task table, as autovacuum would."""
    from django.db import connection

    table = connection.ops.quote_name(task_table())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {table}")
        elif connection.vendor == "mysql":
            cursor.execute(f"ANALYZE TABLE {table}")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE")


def live_count() -> int:
    from django_taskqueue.models import TaskRecord

    return TaskRecord.objects.live().count()


def seed_push(n: int) -> None:
    """Add `n` no-op push tasks through the public API, 100 per call."""
    from django_taskqueue.taskqueue import Queue, Task

    queue = Queue(PUSH_QUEUE)
    for start in range(0, n, 100):
        queue.add([Task(url="/bench/noop") for _ in range(min(100, n - start))])


def seed_pull(n: int) -> None:
    """Add `n` pull tasks (16-byte payloads) through the public API, 100 per call."""
    from django_taskqueue.taskqueue import Queue, Task

    queue = Queue(PULL_QUEUE)
    for start in range(0, n, 100):
        queue.add([Task(b"x" * 16, method="PULL") for _ in range(min(100, n - start))])


def seed_history(total: int) -> int:
    """Insert `total` finished rows, half in each bench queue; return the next free id.

    One INSERT ... SELECT per queue from the database's own row generator: the rows are
    those a drained queue leaves behind (succeeded push tasks, deleted pull tasks) within
    their retention, so no sweep would prune them.
    """
    from django.db import connection

    ops = connection.ops
    table = ops.quote_name(task_table())
    finished = now() - datetime.timedelta(hours=1)
    at = ops.adapt_datetimefield_value(finished)
    columns = (
        "queue_name, name, state, method, url, headers, payload, tag, target, priority, eta, "
        "retry_count, execution_count, retry_options, enqueued_at, errors, first_attempt_at, "
        "leased_at, finished_at"
    )
    half = total // 2
    payload = b"x" * 16
    for queue, state, method, url, body in (
        (PUSH_QUEUE, "succeeded", "POST", "/bench/noop", None),
        (PULL_QUEUE, "deleted", "PULL", "", payload),
    ):
        prefix = f"{HISTORY_PREFIX}{queue}-"
        values = "%s, {name}, %s, %s, %s, {json}, %s, NULL, NULL, 0, %s, 1, 1, NULL, %s, {json}, %s, %s, %s"
        params = [queue, state, method, url, body, at, at, at, at, at]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                select = values.format(name="%s || i", json="'[]'::jsonb")
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) SELECT {select} "
                    "FROM generate_series(1, %s) AS i",
                    [queue, prefix, *params[1:], half],
                )
            elif connection.vendor == "mysql":
                select = values.format(name="CONCAT(%s, seq)", json="'[]'")
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) SELECT {select} FROM seq_1_to_{int(half)}",
                    [queue, prefix, *params[1:]],
                )
            else:
                select = values.format(name="%s || i", json="'[]'")
                cursor.execute(
                    "WITH RECURSIVE gen(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM gen "
                    f"WHERE i < %s) INSERT INTO {table} ({columns}) SELECT {select} FROM gen",
                    [half, queue, prefix, *params[1:]],
                )
    analyze()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        return int(cursor.fetchone()[0]) + 1


# -- child processes --------------------------------------------------------------------------


def start(cmd: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """Start a child in its own process group (so its own children can be stopped with it)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a child started by `start` and its process group: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftover grandchildren (Celery's pool)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(5)


def wait_marks(path: str, count: int, deadline: float, procs=(), rss=None) -> int:
    """Wait until `count` marks are written or `deadline` passes; return the count seen.

    With `rss` (a dict), keep in rss["max_mb"] the largest memory of the `procs` trees seen,
    and in rss["max_pss_mb"] the largest proportional set size (`tree_pss_mb`).
    """
    from bench.jobs import count_marks

    seen = count_marks(path)
    polls = 0
    while seen < count and time.monotonic() < deadline:
        if procs and all(p.poll() is not None for p in procs):
            seen = count_marks(path)
            break
        if rss is not None and polls % 20 == 0:
            mb = sum(tree_rss_mb(p.pid) for p in procs) / max(1, len(procs))
            rss["max_mb"] = max(rss.get("max_mb", 0.0), mb)
            pss = sum(tree_pss_mb(p.pid) for p in procs) / max(1, len(procs))
            rss["max_pss_mb"] = max(rss.get("max_pss_mb", 0.0), pss)
        polls += 1
        time.sleep(0.01)
        seen = count_marks(path)
    return seen


def wait_window(path: str, count: int, window: float, timeout: float, procs=(), rss=None) -> int:
    """Wait for the first mark (up to `timeout`), then for `count` marks or `window` seconds.

    A drain is bounded in time: it measures the rate over at most `window` seconds of work.
    """
    first = wait_marks(path, 1, time.monotonic() + timeout, procs)
    if first < 1:
        return 0
    return wait_marks(path, count, time.monotonic() + (window or timeout), procs, rss)


def _descendants(pid: int) -> list[int]:
    """A process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) spent so far by a process and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for current in _descendants(pid):
        try:
            with open(f"/proc/{current}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (Linux /proc)."""
    return _tree_kb(pid, "status", "VmRSS:") / 1024


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and its descendants, in MB (Linux /proc).

    Each page counts once across the processes that share it (a shared library, a forked
    pool's pages): a tree's sum is what it costs the machine, where RSS counts a page shared by
    a parent and its children once per process.
    """
    return _tree_kb(pid, "smaps_rollup", "Pss:") / 1024


def _tree_kb(pid: int, name: str, field: str) -> int:
    """The sum of `field` (a figure in kB) of /proc/<pid>/<name> over a process tree."""
    total = 0
    for current in _descendants(pid):
        try:
            with open(f"/proc/{current}/{name}") as f:
                for line in f:
                    if line.startswith(field):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def drain_rate(marks: list[float]) -> float | None:
    """Tasks per second between the first and the last job start."""
    if len(marks) < 2:
        return None
    marks = sorted(marks)
    span = marks[-1] - marks[0]
    return (len(marks) - 1) / span if span > 0 else None


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]

    return {"p50": at(0.50), "p99": at(0.99), "max": values[-1], "samples": len(values)}


def fresh_mark_file(name: str) -> str:
    path = BENCH_DIR / ".data" / f"marks-{name}-{os.getpid()}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return str(path)


class MarkWatch:
    """Sleep until the mark file is written to (Linux's inotify), instead of polling it.

    The job's start time is the mark's own timestamp, so how soon the driver sees it does not
    change a sample; but a driver that wakes every fraction of a millisecond to look takes CPU
    from the worker and the database it is measuring, on a machine of two cores. Where
    inotify is missing, `wait` sleeps 0.2 ms, as the driver did before.
    """

    IN_MODIFY = 0x2
    IN_NONBLOCK = 0o4000

    def __init__(self, path: str):
        self.fd = -1
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(self.IN_NONBLOCK)
            if fd >= 0 and libc.inotify_add_watch(fd, os.fsencode(path), self.IN_MODIFY) < 0:
                os.close(fd)
                fd = -1
            self.fd = fd
        except (OSError, AttributeError):
            self.fd = -1

    def wait(self, timeout: float) -> None:
        """Return once the file was written to since the last call, or after `timeout`."""
        if self.fd < 0:
            time.sleep(0.0002)
            return
        import select

        if select.select([self.fd], [], [], timeout)[0]:
            try:
                os.read(self.fd, 4096)  # the events themselves do not matter
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def measure_latency(
    enqueue, marks: str, proc: subprocess.Popen, n: int, timeout: float, settle: float = 0.0
) -> dict:
    """Add one job at a time to an idle worker; return p50/p99 of add -> job start (ms).

    `enqueue()` adds one job whose run appends a mark. The first job shows the worker is up;
    after it, each job is added 20-50 ms after the previous one ran, so the worker is idle.
    """
    import random

    from bench.jobs import count_marks, read_marks

    deadline = time.monotonic() + timeout
    enqueue()
    if wait_marks(marks, 1, time.monotonic() + 60, [proc]) < 1:
        return {"error": "the worker ran no job within 60 s"}
    time.sleep(settle)
    # What the worker costs while it waits: its CPU time over a few idle seconds.
    idle_seconds = min(5.0, max(1.0, timeout / 20))
    time.sleep(0.5)
    cpu = tree_cpu_seconds(proc.pid)
    time.sleep(idle_seconds)
    idle_cpu_share = (tree_cpu_seconds(proc.pid) - cpu) / idle_seconds
    rng = random.Random(6)
    samples: list[float] = []
    watch = MarkWatch(marks)
    try:
        for i in range(n):
            time.sleep(rng.uniform(0.02, 0.05))  # the worker goes idle again
            added = time.time()
            enqueue()
            while count_marks(marks) < i + 2:
                if time.monotonic() > deadline or proc.poll() is not None:
                    break
                watch.wait(0.05)
            else:
                samples.append((read_marks(marks)[-1] - added) * 1000)
                continue
            break
    finally:
        watch.close()
    if not samples:
        return {"error": "no sample within the time limit"}
    result = {
        "latency_ms": percentiles(samples),
        "n": len(samples),
        "idle_cpu_share": idle_cpu_share,
    }
    if len(samples) < n:
        result["error"] = f"{len(samples)} of {n} samples within the time limit"
    return result
