"""procrastinate on PostgreSQL (its own database), a sync no-op task."""

import os

from procrastinate import App, PsycopgConnector

from bench.jobs import mark

app = App(
    connector=PsycopgConnector(
        conninfo=os.environ.get(
            "BENCH_PROCRASTINATE_DSN",
            "postgresql://postgres@127.0.0.1:5432/"
            + os.environ.get("BENCH_PROCRASTINATE_DB", "procrastinate_bench"),
        )
    )
)


@app.task(name="noop")
def noop() -> None:
    mark()
