#!/usr/bin/env bash
# Set up and run the example project: bash scripts/demo.sh
# Creates .venv-demo with the package and what the example project needs (the `demo` extra, not
# the dev toolchain), migrates the database (SQLite unless DATABASE_URL says otherwise), creates
# the superuser admin/admin and the leaderboard's API user, then runs in the background the task
# worker and the leaderboard consumer (examples/leaderboard_consumer.py), and in the foreground
# the development server at http://127.0.0.1:8000 (DEMO_ADDR=host:port to change). Ctrl-C stops
# all three. DEMO_VENV names another environment (e.g. .venv, which has everything).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${DEMO_VENV:-.venv-demo}
if [[ "$venv" == .venv ]]; then
    bash scripts/bootstrap.sh
else
    VENV="$venv" EXTRAS=demo LEAN=1 bash scripts/bootstrap.sh
fi

python=$venv/bin/python
addr=${DEMO_ADDR:-127.0.0.1:8000}
export DJANGO_SETTINGS_MODULE=example_project.settings
# The uploads queue's `parser` target is this server, reached over HTTP.
export PARSER_URL=${PARSER_URL:-http://$addr}

# Migrates, creates the users and prints the consumer's token: one start of Django, not three.
token=$("$python" manage.py setupdemo --migrate)

pids=()
stop_background() {
    # SIGTERM is the worker's clean shutdown: no new work, in-flight tasks finish.
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap stop_background EXIT

# Each in a session of its own: Ctrl-C reaches only the server; stop_background stops the rest.
detached() {
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" &
    else
        "$@" &
    fi
    pids+=($!)
}
detached "$python" manage.py runtaskworker
detached "$python" examples/leaderboard_consumer.py --url "http://$addr/taskqueue/api/" \
    --token "$token" --idle-seconds 2

echo "demo: worker and leaderboard consumer running; open http://$addr/ (admin: admin/admin)"
"$python" manage.py runserver "$addr"
