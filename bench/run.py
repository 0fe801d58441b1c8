"""Run every benchmark scenario and write bench/results/latest.md and latest.json.

    bash bench/run.sh [--quick] [--db postgresql,mysql,sqlite] [--runs 3] [--no-peers]

Each scenario run is its own process with a time limit. The runs go round-robin (round 1 runs
every scenario once, then round 2, ...), so that the load of a shared machine falls on every
scenario alike and the ratios within one run stay comparable.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, databases, report  # noqa: E402

RESULTS = common.BENCH_DIR / "results"

#: Scenario sizes. FULL fits a ~20 minute run on a shared 2-core machine; QUICK checks that
#: every scenario works. Our drains (the issue's 20,000 tasks) run for at most `drain_seconds`
#: after their first task, a bound they stay well within; the peers' drains run the same 20,000
#: jobs where a round fits in a minute (Celery) and are otherwise measured over at most
#: `peer_drain_seconds` of work (some of them are 30 times slower).
FULL = {
    "add_one": 1000,
    "add_batch": 10000,
    "pull": 12000,
    "push": 20000,
    "djtasks": 20000,
    "drain_seconds": 60,
    "peer_drain_seconds": {"dtdb": 4, "procrastinate": 4, "celery": 60, "rq": 4, "rq-simple": 4},
    "latency_pg": 200,
    "latency_polling": 100,
    "floor_insert_one": 1000,
    "floor_insert_batch": 10000,
    "floor_claim_one": 1000,
    "floor_claim_batch": 10000,
    "history": 1000000,
    "peer_enqueue_one": 600,
    "peer_enqueue_batch": 3000,
    "peer_drain": {
        "dtdb": 1500,
        "procrastinate": 2500,
        "celery": 20000,
        "rq": 600,
        "rq-simple": 2500,
    },
    "peer_latency": {"dtdb": 3, "procrastinate": 50, "celery": 50, "rq": 50, "rq-simple": 50},
    "timeout": 150,
}
QUICK = {
    "add_one": 100,
    "add_batch": 500,
    "pull": 2000,
    "push": 100,
    "djtasks": 100,
    "drain_seconds": 3,
    "peer_drain_seconds": {"dtdb": 3, "procrastinate": 3, "celery": 3, "rq": 3, "rq-simple": 3},
    "latency_pg": 10,
    "latency_polling": 2,
    "floor_insert_one": 100,
    "floor_insert_batch": 500,
    "floor_claim_one": 100,
    "floor_claim_batch": 2000,
    "history": 5000,
    "peer_enqueue_one": 100,
    "peer_enqueue_batch": 500,
    "peer_drain": {"dtdb": 50, "procrastinate": 100, "celery": 200, "rq": 30, "rq-simple": 100},
    "peer_latency": {"dtdb": 2, "procrastinate": 5, "celery": 5, "rq": 5, "rq-simple": 5},
    "timeout": 90,
}


class Job:
    """One scenario: the command of one run, and where its figure goes in the table."""

    def __init__(self, group, db, key, label, cmd, unit="tasks/s", timeout=None, env=None):
        self.group, self.db, self.key, self.label = group, db, key, label
        self.cmd, self.unit, self.timeout = cmd, unit, timeout
        #: Variables of this job's own, over the round's environment.
        self.env: dict[str, str] = env or {}
        self.runs: list[dict] = []


#: The scale rounds' second database: the same scenarios on an empty table, run in turn with
#: the ones over the history, so that both sides of each "vs empty history" ratio are measured
#: in the same minutes (this machine's speed drifts by more than the history's cost within a run).
EMPTY_DB_NAME = f"{databases.DB_NAME}_empty"


def ours(db: str, sizes: dict, keep_below: int | None = None) -> list[Job]:
    s = sizes
    py = [common.PYTHON, "-m", "bench.scenarios"]
    extra = ["--window", str(s["drain_seconds"])]

    def job(key, label, name, n, *more, unit="tasks/s", group="ours", keep=()):
        cmd = py + [name, "--db", db, "--n", str(n), *more, *keep]
        env = {"BENCH_DB_NAME": EMPTY_DB_NAME} if group == "scale_empty" else None
        return Job(group, db, key, label, cmd, unit, env=env)

    if keep_below:
        history = {"group": "scale", "keep": ["--keep-below", str(keep_below)]}
        empty = {"group": "scale_empty"}
        pull = ("pull_1", "pull: lease 1000 + delete, 1 process", "pull", s["pull"])
        push = ("push_1", "push drain, 1 worker", "push", s["push"], *extra)
        return [
            job(*pull, **history),
            job(*pull, **empty),
            job(*push, **history),
            job(*push, **empty),
            job(
                "dashboard",
                "admin dashboard figures, every queue",
                "dashboard",
                50,
                unit="ms",
                **history,
            ),
        ]
    latency_n = s["latency_pg"] if db == "postgresql" else s["latency_polling"]
    return [
        job("add_one_push", "add one push task per transaction", "add-one-push", s["add_one"]),
        job("add_one_pull", "add one pull task per transaction", "add-one-pull", s["add_one"]),
        job("add_batch", "add 100 tasks per call", "add-batch", s["add_batch"]),
        job("pull_1", "pull: lease 1000 + delete, 1 process", "pull", s["pull"]),
        job("pull_4", "pull: lease 1000 + delete, 4 processes", "pull", s["pull"], "--procs", "4"),
        job("push_1", "push drain, 1 worker", "push", s["push"], *extra),
        job("push_2", "push drain, 2 workers", "push", s["push"], "--procs", "2", *extra),
        job(
            "push_processes_2",
            "push drain, one runtaskworker --processes 2",
            "push-processes",
            s["push"],
            "--procs",
            "2",
            *extra,
        ),
        job("djtasks_1", "Django Tasks drain, 1 worker", "djtasks", s["djtasks"], *extra),
        job("latency", "idle latency add -> handler", "latency", latency_n, unit="ms"),
    ]


def floor(db: str, sizes: dict) -> list[Job]:
    py = [common.PYTHON, "-m", "bench.floor"]
    idle_n = sizes["latency_pg"] if db == "postgresql" else sizes["latency_polling"]
    ops = [
        ("insert_one", "INSERT one row per transaction", "insert-one", sizes["floor_insert_one"]),
        (
            "insert_batch",
            "INSERT 100 rows per statement",
            "insert-batch",
            sizes["floor_insert_batch"],
        ),
        ("claim_1", "SKIP LOCKED claim + DELETE, 1 row", "claim-1", sizes["floor_claim_one"]),
        (
            "claim_100",
            "SKIP LOCKED claim + DELETE, 100 rows",
            "claim-100",
            sizes["floor_claim_batch"],
        ),
        (
            "claim_1000",
            "SKIP LOCKED claim + DELETE, 1000 rows",
            "claim-1000",
            sizes["floor_claim_batch"],
        ),
    ]
    ops += [
        ("write_delete", "DELETE of 1000 rows by id", "write-delete", sizes["floor_claim_batch"]),
        (
            "write_tombstone",
            "tombstone UPDATE of 1000 rows by id",
            "write-tombstone",
            sizes["floor_claim_batch"],
        ),
        (
            "write_lease",
            "lease UPDATE of 1000 rows by id",
            "write-lease",
            sizes["floor_claim_batch"],
        ),
    ]
    if db != "mysql":  # MariaDB cannot DELETE ... WHERE id IN (SELECT ... LIMIT) of one table
        ops += [
            (
                "fused_1",
                "fused DELETE (SELECT SKIP LOCKED) RETURNING, 1 row",
                "claim-fused-1",
                sizes["floor_claim_one"],
            ),
            (
                "fused_100",
                "fused DELETE (SELECT SKIP LOCKED) RETURNING, 100 rows",
                "claim-fused-100",
                sizes["floor_claim_batch"],
            ),
        ]
    jobs = [
        Job("floor", db, key, label, py + [op, "--db", db, "--n", str(n)])
        for key, label, op, n in ops
    ]
    label = "INSERT one row after 20-50 ms idle (ms)"
    cmd = py + ["insert-idle", "--db", db, "--n", str(idle_n)]
    return jobs + [Job("floor", db, "insert_idle", label, cmd, unit="ms")]


def peers(sizes: dict) -> list[Job]:
    py = [common.PYTHON, "-m", "bench.peer_scenarios"]
    jobs = []
    for peer in ("dtdb", "procrastinate", "celery", "rq", "rq-simple"):
        if peer != "rq-simple":
            jobs.append(
                Job(
                    "peer",
                    peer,
                    "enqueue_one",
                    "enqueue one",
                    py + [peer, "enqueue-one", "--n", str(sizes["peer_enqueue_one"])],
                )
            )
            jobs.append(
                Job(
                    "peer",
                    peer,
                    "enqueue_batch",
                    "enqueue 100 per call",
                    py + [peer, "enqueue-batch", "--n", str(sizes["peer_enqueue_batch"])],
                )
            )
        jobs.append(
            Job(
                "peer",
                peer,
                "drain",
                "drain, 1 worker",
                py
                + [
                    peer,
                    "drain",
                    "--n",
                    str(sizes["peer_drain"][peer]),
                    "--window",
                    str(sizes["peer_drain_seconds"][peer]),
                ],
            )
        )
        jobs.append(
            Job(
                "peer",
                peer,
                "latency",
                "idle latency",
                unit="ms",
                cmd=py + [peer, "latency", "--n", str(sizes["peer_latency"][peer])],
            )
        )
    return jobs


def run_job(job: Job, env: dict, timeout: float, log) -> None:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            job.cmd,
            cwd=common.ROOT,
            env={**env, **job.env},
            capture_output=True,
            text=True,
            timeout=job.timeout or timeout,
            start_new_session=True,
        )
        out = proc.stdout + proc.stderr
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if lines:
            result = json.loads(lines[-1][len("RESULT ") :])
        else:
            tail = " | ".join(out.strip().splitlines()[-3:])
            result = {"error": f"exit {proc.returncode}: {tail[-300:]}"}
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        result = {"error": f"time limit of {job.timeout or timeout:.0f} s"}
    result["seconds"] = round(time.monotonic() - started, 2)
    job.runs.append(result)
    log.write(f"$ {' '.join(job.cmd)}\n{out}\n")
    value = result.get("rate") or (result.get("latency_ms") or result).get("p50")
    shown = f"{value:,.1f}" if isinstance(value, (int, float)) else "-"
    err = f"  ERROR {result['error']}" if "error" in result else ""
    print(
        f"  {job.group:6} {job.db:13} {job.key:16} {shown:>12} {job.unit}"
        f"  ({result['seconds']:.1f} s){err}",
        flush=True,
    )


def rounds(jobs: list[Job], runs: int, env: dict, timeout: float, log) -> None:
    for r in range(runs):
        print(f"round {r + 1}/{runs}", flush=True)
        for job in jobs:
            run_job(job, env, timeout, log)


def summarize(job: Job) -> dict:
    values, p99s, ns, errors = [], [], [], []
    for run in job.runs:
        if job.unit == "ms":
            # A latency's percentiles are under "latency_ms"; the dashboard's are the run's own.
            lat = run.get("latency_ms") or (run if "p50" in run else None)
            if lat:
                values.append(lat["p50"])
                p99s.append(lat["p99"])
        elif run.get("rate"):
            values.append(run["rate"])
        if "n" in run:
            ns.append(run["n"])
        if "error" in run:
            errors.append(run["error"])
    summary = {
        "group": job.group,
        "db": job.db,
        "key": job.key,
        "label": job.label,
        "unit": job.unit,
        "values": values,
        "n": ns,
        "errors": errors,
        "command": " ".join(job.cmd[1:]),
    }
    if values:
        summary.update(median=statistics.median(values), min=min(values), max=max(values))
    rss = [run["rss_mb"] for run in job.runs if run.get("rss_mb")]
    if rss:
        summary["rss_mb"] = statistics.median(rss)
    pss = [run["pss_mb"] for run in job.runs if run.get("pss_mb")]
    if pss:
        summary["pss_mb"] = statistics.median(pss)
    idle = [run["idle_cpu_share"] for run in job.runs if "idle_cpu_share" in run]
    if idle:
        summary["idle_cpu_share"] = statistics.median(idle)
    enqueue = [run["enqueue_rate"] for run in job.runs if run.get("enqueue_rate")]
    if enqueue:
        summary["enqueue_rate"] = {
            "median": statistics.median(enqueue),
            "min": min(enqueue),
            "max": max(enqueue),
        }
    if p99s:
        summary["p99"] = {"median": statistics.median(p99s), "min": min(p99s), "max": max(p99s)}
    # The dashboard's other two figures (ms per call): the metrics endpoint, a queue's page.
    for key in ("metrics_p50", "queue_page_p50"):
        found = [run[key] for run in job.runs if run.get(key) is not None]
        if found:
            summary[key] = {
                "median": statistics.median(found),
                "min": min(found),
                "max": max(found),
                "unit": "ms",
            }
    return summary


def machine() -> dict:
    info = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(x for x in f if x.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(x for x in f if x.startswith("model name")).split(":", 1)[1].strip()
        info["load_average_at_start"] = os.getloadavg()
    except (OSError, StopIteration):
        pass
    import django

    info["django"] = django.get_version()
    versions = {}
    for dist in (
        "psycopg",
        "PyMySQL",
        "django-tasks",
        "django-tasks-db",
        "procrastinate",
        "celery",
        "rq",
        "redis",
        "pyinstrument",
    ):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001
            versions[dist] = "not installed"
    info["packages"] = versions
    try:
        import redis

        info["redis"] = redis.Redis().info()["redis_version"]
    except Exception as exc:  # noqa: BLE001
        info["redis"] = f"unavailable ({exc.__class__.__name__})"
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--db", default="postgresql,mysql,sqlite")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 3, quick 1)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--history", type=int, default=None, help="finished rows, scale runs")
    parser.add_argument("--output", default=str(RESULTS / "latest"))
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.history:
        sizes["history"] = args.history
    runs = args.runs or (1 if args.quick else 3)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    RESULTS.mkdir(exist_ok=True)
    (common.BENCH_DIR / ".data").mkdir(exist_ok=True)
    log = open(RESULTS / "run.log", "w")
    started = time.time()
    info = {
        "machine": machine(),
        "sizes": sizes,
        "runs": runs,
        "quick": args.quick,
        "command": "bash bench/run.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "databases": {},
    }
    # The peers were installed by pip, which compiles them; this project is installed editable,
    # from source. Compiled here too, no worker pays (in time and memory) for compiling what an
    # installed package would not.
    compileall.compile_dir(str(common.ROOT / "django_taskqueue"), quiet=1)
    compileall.compile_dir(str(common.BENCH_DIR), maxlevels=1, quiet=1)
    jobs: list[Job] = []
    for db in dbs:
        print(f"== {db}: create and migrate {databases.DB_NAME}", flush=True)
        databases.recreate(db)
        info["databases"][db] = {
            "version": databases.version(db),
            "settings": databases.settings_summary(db),
        }
        env = common.child_env(db)
        db_jobs = ours(db, sizes) + floor(db, sizes)
        rounds(db_jobs, runs, env, sizes["timeout"], log)
        jobs += db_jobs
        if not args.no_scale:
            print(f"== {db}: scale, {sizes['history']:,} finished rows of history", flush=True)
            seed = Job(
                "seed",
                db,
                "history",
                "seed history",
                [
                    common.PYTHON,
                    "-m",
                    "bench.scenarios",
                    "seed-history",
                    "--db",
                    db,
                    "--n",
                    str(sizes["history"]),
                ],
            )
            run_job(seed, env, 600, log)
            keep_below = seed.runs[-1].get("keep_below")
            info["databases"][db]["history_seed_seconds"] = seed.runs[-1].get("seconds")
            if keep_below:
                databases.recreate(db, EMPTY_DB_NAME)
                scale_jobs = ours(db, sizes, keep_below=keep_below)
                rounds(scale_jobs, runs, env, sizes["timeout"], log)
                jobs += scale_jobs
    if not args.no_peers:
        if "postgresql" not in dbs:
            databases.recreate("postgresql")
        print("== peers, on PostgreSQL and Redis", flush=True)
        subprocess.run(
            [
                common.PYTHON,
                "-m",
                "procrastinate",
                "--app=bench.peers.procrastinate_app.app",
                "schema",
                "--apply",
            ],
            cwd=common.ROOT,
            env=common.child_env("postgresql"),
            check=True,
            capture_output=True,
        )
        peer_jobs = peers(sizes)
        rounds(peer_jobs, runs, common.child_env("postgresql"), sizes["timeout"], log)
        jobs += peer_jobs
    if not args.no_profile:
        db = "postgresql" if "postgresql" in dbs else dbs[0]
        print(f"== profile of the hot paths on {db} (pyinstrument)", flush=True)
        job = Job(
            "profile",
            db,
            "profile",
            "profile",
            [
                common.PYTHON,
                "-m",
                "bench.profile",
                "--db",
                db,
                "--n",
                str(200 if args.quick else 1000),
                "--push",
                str(50 if args.quick else 2000),
            ],
        )
        run_job(job, common.child_env(db), 300, log)
        info["profiles"] = {
            "db": db,
            "paths": job.runs[-1].get("profiles", []),
            "error": job.runs[-1].get("error"),
        }
    if not args.no_profile and "postgresql" in dbs:
        print("== the portable path against postgresql's (bench/ab.py)", flush=True)
        job = Job(
            "ab",
            "postgresql",
            "ab",
            "before/after",
            [common.PYTHON, "-m", "bench.ab", "--rounds", "1" if args.quick else "3"],
        )
        run_job(job, common.child_env("postgresql"), 300, log)
        info["before_after"] = {k: v for k, v in job.runs[-1].items() if k != "seconds"}
    info["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC")
    info["duration_seconds"] = round(time.time() - started)
    info["results"] = [summarize(job) for job in jobs]
    output = Path(args.output)
    output.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    output.with_suffix(".md").write_text(report.markdown(info))
    print(f"wrote {output.with_suffix('.md')} and .json in {info['duration_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
