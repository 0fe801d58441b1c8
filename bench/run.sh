#!/usr/bin/env bash
# Run the benchmarks: bash bench/run.sh [--quick] [--db postgresql,mysql,sqlite] [--runs 3]
# Creates bench/.venv (the project plus the peers of bench/requirements.txt) on first use, then
# runs bench/run.py, which writes bench/results/latest.md and latest.json.
# Needs PostgreSQL (127.0.0.1:5432, user postgres), MariaDB (127.0.0.1:3306, root) and Redis
# (127.0.0.1:6379) running; it creates and drops its own databases (taskqueue_bench,
# taskqueue_bench_empty for the scale rounds, procrastinate_bench) and uses Redis databases 11 and 12.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import django_taskqueue, procrastinate, celery, rq, django_tasks_db, pyinstrument" 2>/dev/null; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e .. -r requirements.txt
fi
cd ..
exec bench/.venv/bin/python bench/run.py "$@"
