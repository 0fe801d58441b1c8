"""Render the results of one run (bench/results/latest.json) as Markdown tables."""

from __future__ import annotations

DBS = {"postgresql": "PostgreSQL", "mysql": "MariaDB", "sqlite": "SQLite"}
PEERS = {
    "dtdb": "django-tasks-db (`db_worker`)",
    "procrastinate": "procrastinate (sync task)",
    "celery": "Celery + Redis (prefork)",
    "rq": "RQ + Redis (fork per job)",
    "rq-simple": "RQ + Redis (SimpleWorker)",
}


def _num(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.1f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def cell(row: dict | None, p99: bool = False, missing: str = "not run") -> str:
    if row is None:
        return missing
    if p99:
        stats = row.get("p99")
        if not stats:
            return "not measured" + _why(row)
    elif "median" not in row:
        return "not measured" + _why(row)
    else:
        stats = row
    unit = row["unit"]
    text = _num(stats["median"], unit)
    if stats["min"] != stats["max"]:
        text += f" [{_num(stats['min'], unit)}–{_num(stats['max'], unit)}]"
    if row.get("errors") and not p99:
        text += " ⚠"
    return text


def _rss(row: dict | None, key: str = "rss_mb") -> str:
    return f"{row[key]:.0f}" if row and row.get(key) else "—"


def _pss(row: dict | None) -> str:
    return _rss(row, "pss_mb")


def _why(row: dict) -> str:
    return f": {row['errors'][0]}" if row.get("errors") else ""


def _seconds(sizes: dict, peer: str) -> float:
    bound = sizes.get("peer_drain_seconds", sizes["drain_seconds"])
    return bound[peer] if isinstance(bound, dict) else bound


def _idle(row: dict | None) -> str:
    if not row or row.get("idle_cpu_share") is None:
        return "—"
    return f"{row['idle_cpu_share']:.1%}"


def ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or "median" not in a or "median" not in b or not b["median"]:
        return None
    return a["median"] / b["median"]


def _empty_of(rows: dict, db: str, key: str) -> dict | None:
    """The empty table's side of a scale ratio: the same scenario run in turn with the history's
    (`scale_empty`), or, in results from before it existed, the main rounds' run."""
    return rows.get(("scale_empty", db, key)) or rows.get(("ours", db, key))


def markdown(info: dict) -> str:
    rows = {(r["group"], r["db"], r["key"]): r for r in info["results"]}
    dbs = [db for db in DBS if db in info["databases"]]
    m = info["machine"]
    out = [
        "# Benchmark results",
        "",
        f"Written by `{info['command'].strip()}` on {info['started_at']} "
        f"({info['duration_seconds']} s, {info['runs']} round(s); medians [min–max] over the "
        "rounds). The machine is shared with other work, so absolute figures are noisy: "
        "compare ratios within this run.",
        "",
        f"- Machine: {m.get('cores')} cores ({m.get('cpu', '?')}), "
        f"{m.get('memory_gib', '?')} GiB, load average at start "
        f"{', '.join(f'{x:.1f}' for x in m.get('load_average_at_start', []))}; "
        f"Python {m.get('python')}, Django {m.get('django')}, Redis {m.get('redis')}.",
    ]
    for db in dbs:
        d = info["databases"][db]
        out.append(f"- {DBS[db]} {d['version']}: {d['settings']}.")
    pk = m.get("packages", {})
    out.append("- Clients and peers: " + ", ".join(f"{k} {v}" for k, v in pk.items()) + ".")
    s = info["sizes"]
    out.append(
        f"- Sizes: add {s['add_one']:,} single / {s['add_batch']:,} batched tasks; pull "
        f"{s['pull']:,} tasks; push drains of {s['push']:,} seeded tasks and Django Tasks of "
        f"{s['djtasks']:,}, each measured over at most {s['drain_seconds']} s of work after the "
        f"first task starts; latency {s['latency_pg']} samples on PostgreSQL, "
        f"{s['latency_polling']} on the polling databases; scale history {s['history']:,} "
        "finished rows."
    )
    if "peer_drain" in s:
        out.append(
            f"- Peers: enqueue {s['peer_enqueue_one']:,} one at a time and "
            f"{s['peer_enqueue_batch']:,} in batches of 100; drains of "
            + ", ".join(
                f"{k} {v:,} (at most {_seconds(s, k)} s of work)"
                for k, v in s["peer_drain"].items()
            )
            + " jobs; "
            + "latency samples "
            + ", ".join(f"{k} {v}" for k, v in s["peer_latency"].items())
            + "."
        )
    out += ["", "## django-taskqueue (tasks/s; latency in ms)", ""]
    out.append("| scenario | " + " | ".join(DBS[db] for db in dbs) + " |")
    out.append("|---|" + "---|" * len(dbs))
    keys = [
        ("add_one_push", "`add` one push task per transaction"),
        ("add_one_pull", "`add` one pull task per transaction"),
        ("add_batch", "`add` 100 tasks per call"),
        ("pull_1", "pull: `lease_tasks(…, 1000)` + `delete_tasks`, 1 process"),
        ("pull_4", "pull: the same, 4 processes"),
        ("push_1", "push drain (no-op URL task), 1 worker"),
        ("push_2", "push drain, 2 workers"),
        ("push_processes_2", "push drain, one `runtaskworker --processes 2`"),
        ("djtasks_1", "Django Tasks no-op drain, 1 worker"),
    ]
    for key, label in keys:
        out.append(
            f"| {label} | " + " | ".join(cell(rows.get(("ours", db, key))) for db in dbs) + " |"
        )
    out.append(
        "| idle latency add → handler start, p50 (ms) | "
        + " | ".join(cell(rows.get(("ours", db, "latency"))) for db in dbs)
        + " |"
    )
    out.append(
        "| idle latency, p99 (ms) | "
        + " | ".join(cell(rows.get(("ours", db, "latency")), p99=True) for db in dbs)
        + " |"
    )
    out.append(
        "| idle worker's CPU (share of one core) | "
        + " | ".join(_idle(rows.get(("ours", db, "latency"))) for db in dbs)
        + " |"
    )
    out.append(
        "| worker RSS during the push drain (MB) | "
        + " | ".join(_rss(rows.get(("ours", db, "push_1"))) for db in dbs)
        + " |"
    )
    out.append(
        "| worker PSS during the push drain (MB) | "
        + " | ".join(_pss(rows.get(("ours", db, "push_1"))) for db in dbs)
        + " |"
    )

    out += ["", "## The floor: raw SQL through the same client (rows/s)", ""]
    out.append("| operation | " + " | ".join(DBS[db] for db in dbs) + " |")
    out.append("|---|" + "---|" * len(dbs))
    floor_keys = [
        ("insert_one", "INSERT one row per transaction"),
        ("insert_batch", "INSERT 100 rows per statement"),
        ("claim_1", "SELECT … FOR UPDATE SKIP LOCKED + DELETE, 1 row per transaction"),
        ("claim_100", "the same, 100 rows"),
        ("claim_1000", "the same, 1000 rows"),
        ("fused_1", "fused DELETE … WHERE id IN (SELECT … SKIP LOCKED) RETURNING, 1 row"),
        ("fused_100", "the same fused statement, 100 rows"),
        ("write_delete", "write only: DELETE of 1,000 rows by id"),
        (
            "write_tombstone",
            "write only: UPDATE state = 'deleted' of 1,000 rows by id (our delete)",
        ),
        ("write_lease", "write only: UPDATE of the lease columns of 1,000 rows by id (our lease)"),
        (
            "insert_idle",
            "INSERT one row per transaction after 20–50 ms idle, p50 ms (the idle latency's pauses)",
        ),
    ]
    for key, label in floor_keys:
        cells = []
        for db in dbs:
            row = rows.get(("floor", db, key))
            cells.append(cell(row) if row else "n/a (no such statement)")
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    out += ["", "## django-taskqueue as a fraction of the floor (ratio of medians)", ""]
    out.append("| ours / floor | " + " | ".join(DBS[db] for db in dbs) + " |")
    out.append("|---|" + "---|" * len(dbs))
    pairs = [
        ("add_one_pull", "insert_one", "`add` one / INSERT one row"),
        ("add_one_push", "insert_one", "`add` one push task (NOTIFY) / INSERT one row"),
        ("add_batch", "insert_batch", "`add` 100 / INSERT 100 rows"),
        ("pull_1", "claim_100", "lease 1000 + delete / claim + DELETE 100 rows"),
        ("pull_1", "claim_1000", "lease 1000 + delete / claim + DELETE 1000 rows"),
    ]
    for ours_key, floor_key, label in pairs:
        cells = []
        for db in dbs:
            r = ratio(rows.get(("ours", db, ours_key)), rows.get(("floor", db, floor_key)))
            cells.append(f"{r:.0%}" if r is not None else "—")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for db in dbs:
        lat, idle = rows.get(("ours", db, "latency")), rows.get(("floor", db, "insert_idle"))
        if lat and idle and "median" in lat and "median" in idle:
            cells.append(f"{lat['median'] - idle['median']:.1f} ms")
        else:
            cells.append("—")
    out.append(
        "| idle latency p50 − the idle INSERT's p50 (what comes after the add's commit) | "
        + " | ".join(cells)
        + " |"
    )
    cells = []
    for db in dbs:
        lease, tomb = (
            rows.get(("floor", db, "write_lease")),
            rows.get(("floor", db, "write_tombstone")),
        )
        pull = rows.get(("ours", db, "pull_1"))
        if lease and tomb and pull and all("median" in x for x in (lease, tomb, pull)):
            both = 1 / (1 / lease["median"] + 1 / tomb["median"])
            cells.append(f"{pull['median'] / both:.0%} (writes alone: {both:,.0f}/s)")
        else:
            cells.append("—")
    out.append(
        "| lease 1000 + delete / its two UPDATEs alone (lease, then tombstone) | "
        + " | ".join(cells)
        + " |"
    )

    if any(k[0] == "scale" for k in rows):
        out += ["", f"## Scale: {s['history']:,} finished rows kept as history", ""]
        out.append("| scenario | " + " | ".join(DBS[db] for db in dbs) + " |")
        out.append("|---|" + "---|" * len(dbs))
        for key, label in (("pull_1", "pull, 1 process"), ("push_1", "push drain, 1 worker")):
            cells = []
            for db in dbs:
                scale, empty = rows.get(("scale", db, key)), _empty_of(rows, db, key)
                r = ratio(scale, empty)
                cells.append(
                    cell(scale)
                    + (f" ({r - 1:+.0%} vs {cell(empty)} on an empty table)" if r else "")
                )
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        # The dashboard over the same history (`bench.scenarios dashboard`), ms per call, p50.
        for field, label in (
            (None, "admin dashboard, every queue's figures (ms per call, p50)"),
            ("metrics_p50", "metrics endpoint, `collect()` and its text (ms per call, p50)"),
            ("queue_page_p50", "a queue's page: figures, errors, slowest (ms per call, p50)"),
        ):
            cells = []
            for db in dbs:
                row = rows.get(("scale", db, "dashboard"))
                if row is not None and field is not None:
                    row = row.get(field) and {**row, **row[field]}
                cells.append(cell(row, missing="not measured"))
            if any(c != "not measured" for c in cells):
                out.append(f"| {label} | " + " | ".join(cells) + " |")
        if any(k[0] == "scale_empty" for k in rows):
            out += [
                "",
                "Each empty-table figure is the same scenario on an empty task table in a second "
                "database, run in turn with the one over the history (each round: pull over the "
                "history, pull on the empty table, push over the history, push on the empty "
                "table), so both sides of a ratio are measured in the same minutes.",
            ]
        seeds = [
            f"{DBS[db]} {info['databases'][db].get('history_seed_seconds')} s"
            for db in dbs
            if info["databases"][db].get("history_seed_seconds") is not None
        ]
        if seeds:
            out += [
                "",
                "Seeding the history (one INSERT … SELECT per queue) took: "
                + ", ".join(seeds)
                + ".",
            ]

    if any(k[0] == "peer" for k in rows):
        out += ["", "## Side by side with the peers: PostgreSQL and Redis, same no-op job", ""]
        out.append(
            "| system | enqueue one/s | enqueue 100 per call/s | drain, 1 worker (jobs/s) "
            "| idle latency p50 (ms) | p99 (ms) | worker RSS (MB) | worker PSS (MB) |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        pg = "postgresql"
        dj = rows.get(("ours", pg, "djtasks_1"))
        dj_enqueue = "not measured"
        if dj and dj.get("enqueue_rate"):
            dj_enqueue = cell({"unit": "tasks/s", **dj["enqueue_rate"]})
        out.append(
            "| django-taskqueue, push URL task (`runtaskworker`) | "
            f"{cell(rows.get(('ours', pg, 'add_one_push')))} | "
            f"{cell(rows.get(('ours', pg, 'add_batch')))} | "
            f"{cell(rows.get(('ours', pg, 'push_1')))} | "
            f"{cell(rows.get(('ours', pg, 'latency')))} | "
            f"{cell(rows.get(('ours', pg, 'latency')), p99=True)} | "
            f"{_rss(rows.get(('ours', pg, 'push_1')))} | {_pss(rows.get(('ours', pg, 'push_1')))} |"
        )
        out.append(
            f"| django-taskqueue, Django Tasks `@task` | {dj_enqueue} | — | {cell(dj)} | — | — "
            f"| {_rss(dj)} | {_pss(dj)} |"
        )
        for peer, label in PEERS.items():
            lat = rows.get(("peer", peer, "latency"))
            same = "as RQ" if peer == "rq-simple" else "not run"
            out.append(
                f"| {label} | {cell(rows.get(('peer', peer, 'enqueue_one')), missing=same)} | "
                f"{cell(rows.get(('peer', peer, 'enqueue_batch')), missing=same)} | "
                f"{cell(rows.get(('peer', peer, 'drain')))} | {cell(lat)} | {cell(lat, p99=True)} "
                f"| {_rss(rows.get(('peer', peer, 'drain')))} "
                f"| {_pss(rows.get(('peer', peer, 'drain')))} |"
            )
        out += [
            "",
            "Worker RSS: the largest resident memory of the worker's process tree seen during "
            "the drain (Celery: the main process and its pool; RQ: the worker and its work horse). "
            "Worker PSS: the same tree's largest proportional set size, where a page shared by "
            "several processes (a library, a forked pool's pages) counts once in all.",
        ]

    out += ["", "## The targets, as measured in this run", ""]
    out.append(
        f"Before: the run of {BEFORE_RUN}, the last one before this round of work. PostgreSQL "
        "unless the row says otherwise."
    )
    out.append("")
    out.append("| target | before | this run | met? |")
    out.append("|---|---|---|---|")
    for label, value, goal, before in targets(rows):
        fmt = {
            "x": lambda v: f"{v:.2f}×",
            "%": lambda v: f"{v:.0%}",
            "Δ": lambda v: f"{v - 1:+.0%}",
            "cpu": lambda v: f"{v:.1%} of a core",
            "MB": lambda v: f"{v:.0f} MB",
        }.get(goal[0], lambda v: f"{v:.1f} ms")
        was = fmt(before) if before is not None else "—"
        if value is None:
            out.append(f"| {label} | {was} | not measured | — |")
        else:
            met = goal[1](value)
            out.append(f"| {label} | {was} | {fmt(value)} | {'met' if met else 'not met'} |")

    prof = info.get("profiles")
    if prof:
        out += [
            "",
            f"## Profile of the hot paths ({DBS.get(prof['db'], prof['db'])}, in-process, "
            "under pyinstrument)",
            "",
        ]
        if prof.get("paths"):
            out.append(
                "| path | tasks/s (profiled) | CPU of this process / wall | CPU µs per task "
                "| SQL statements per task | call tree |"
            )
            out.append("|---|---|---|---|---|---|")
            for p in prof["paths"]:
                out.append(
                    f"| {p['path']} | {p['tasks_per_s']:,.0f} | {p['cpu_share']:.0%} | "
                    f"{p['cpu_us_per_task']:,.0f} | {p['statements_per_task']:.3f} | "
                    f"`{p['profile']}` |"
                )
        else:
            out.append(f"not measured: {prof.get('error')}")

    ab = info.get("before_after")
    if ab and "error" not in ab:
        out += [
            "",
            "## The portable path against PostgreSQL's (`bench/ab.py`, interleaved, medians)",
            "",
        ]
        out.append("| path | wall µs per task | CPU µs per task |")
        out.append("|---|---|---|")
        for name, r in ab.items():
            out.append(f"| {name} | {r['wall_us']:.1f} | {r['cpu_us']:.1f} |")
    elif ab:
        out += ["", f"Portable against PostgreSQL: not measured: {ab['error']}"]

    warned = [r for r in info["results"] if r.get("errors")]
    if warned:
        out += ["", "## Notes from the runs (⚠)", ""]
        for r in warned:
            out.append(
                f"- {r['group']} {r['db']} {r['key']}: {'; '.join(sorted(set(r['errors'])))}"
            )
    return "\n".join(out) + "\n"


#: The run the "before" column quotes (docs/benchmarks.md of that day kept its tables).
BEFORE_RUN = "2026-11-23 20:10 UTC"


def targets(rows: dict) -> list[tuple[str, float | None, tuple, float | None]]:
    """(label, this run's value, (unit, test), the value before) for each target."""
    pg = "postgresql"
    push = rows.get(("ours", pg, "push_1"))
    dj = rows.get(("ours", pg, "djtasks_1"))

    def peer(name, key="drain"):
        return rows.get(("peer", name, key))

    def best(*names):
        found = [peer(n) for n in names if peer(n) and "median" in peer(n)]
        return max(found, key=lambda r: r["median"]) if found else None

    def median(row):
        return row["median"] if row and "median" in row else None

    lat = rows.get(("ours", pg, "latency"))
    celery_lat = peer("celery", "latency")
    lat_vs_celery = ratio(lat, celery_lat)
    scale = [ratio(rows.get(("scale", pg, k)), _empty_of(rows, pg, k)) for k in ("push_1",)]
    polling = [
        rows.get(("ours", db, "latency"))
        for db in ("mysql", "sqlite")
        if ("ours", db, "latency") in rows
    ]
    polling_p50 = [r["median"] for r in polling if r and "median" in r]
    polling_cpu = [r["idle_cpu_share"] for r in polling if r and "idle_cpu_share" in r]
    rss = [
        r["rss_mb"]
        for r in (rows.get(("ours", db, "push_1")) for db in ("postgresql", "mysql", "sqlite"))
        if r and r.get("rss_mb")
    ]
    return [
        (
            "`add` 100 per call ≥ 1.2× procrastinate `batch_defer`",
            ratio(rows.get(("ours", pg, "add_batch")), peer("procrastinate", "enqueue_batch")),
            ("x", lambda v: v >= 1.2),
            5861 / 13470,
        ),
        (
            "`add` 100 per call ≥ 1.5× RQ `enqueue_many`",
            ratio(rows.get(("ours", pg, "add_batch")), peer("rq", "enqueue_batch")),
            ("x", lambda v: v >= 1.5),
            5861 / 8827,
        ),
        (
            "`add` one ≥ 75% of the one-row INSERT floor",
            ratio(rows.get(("ours", pg, "add_one_pull")), rows.get(("floor", pg, "insert_one"))),
            ("%", lambda v: v >= 0.75),
            0.59,
        ),
        (
            "idle latency p50 ≤ 3 ms",
            median(lat),
            ("ms", lambda v: v <= 3),
            4.9,
        ),
        (
            "idle latency p50 below Celery + Redis's (ours / Celery's)",
            lat_vs_celery,
            ("x", lambda v: v < 1),
            4.9 / 4.2,
        ),
        (
            "idle latency p50 ≤ 50 ms on MariaDB and SQLite (the worse)",
            max(polling_p50) if polling_p50 else None,
            ("ms", lambda v: v <= 50),
            968.5,
        ),
        (
            "an idle worker on MariaDB and SQLite uses < 1% of a core (the worse)",
            max(polling_cpu) if polling_cpu else None,
            ("cpu", lambda v: v < 0.01),
            None,
        ),
        (
            "Django Tasks drain, 1 worker ≥ 2× the push drain",
            ratio(dj, push),
            ("x", lambda v: v >= 2),
            2436 / 2122,
        ),
        (
            "pull lease 1000 + delete ≥ 50% of the claim + DELETE (100 rows) floor",
            ratio(rows.get(("ours", pg, "pull_1")), rows.get(("floor", pg, "claim_100"))),
            ("%", lambda v: v >= 0.5),
            0.35,
        ),
        (
            "push drain with 1,000,000 rows of history within −10% of the empty table's",
            scale[0],
            ("Δ", lambda v: v >= 0.9),
            1757 / 2122,
        ),
        (
            "worker RSS during a drain ≤ 50 MB (the largest of the three databases)",
            max(rss) if rss else None,
            ("MB", lambda v: v <= 50),
            74,
        ),
        (
            "push drain, one `runtaskworker --processes 2` ≥ 1.8× one worker",
            ratio(rows.get(("ours", pg, "push_processes_2")), push),
            ("x", lambda v: v >= 1.8),
            None,
        ),
        (
            "push drain, 1 worker ≥ 3× django-tasks-db `db_worker` (earlier target)",
            ratio(push, peer("dtdb")),
            ("x", lambda v: v >= 3),
            2122 / 74.1,
        ),
        (
            "push drain, 1 worker ≥ 1.5× procrastinate (earlier target)",
            ratio(push, peer("procrastinate")),
            ("x", lambda v: v >= 1.5),
            2122 / 194,
        ),
        (
            "push drain, 1 worker ahead of Celery + Redis (earlier target)",
            ratio(push, peer("celery")),
            ("x", lambda v: v > 1),
            2122 / 959,
        ),
        (
            "push drain, 1 worker ahead of RQ + Redis, the faster of its workers (earlier target)",
            ratio(push, best("rq", "rq-simple")),
            ("x", lambda v: v > 1),
            2122 / 246,
        ),
    ]
