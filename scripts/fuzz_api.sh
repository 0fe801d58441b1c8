#!/usr/bin/env bash
# Fuzz the REST API from its published OpenAPI schema with schemathesis: no 5xx, and every
# response must match the schema. Serves the test project (tests.settings) with runserver on
# loopback against a fresh SQLite database, as a superuser holding a DRF token.
#   bash scripts/fuzz_api.sh [extra schemathesis options, e.g. --seed 1 -n 50]
# Bounded: FUZZ_MAX_EXAMPLES test cases per operation (default 30). Exits non-zero on a failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
py=$PWD/.venv/bin/python

scratch=$(mktemp -d)
server=
cleanup() {
    if [[ -n "$server" ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

export DJANGO_SETTINGS_MODULE=tests.settings
export DATABASE_URL="sqlite:///$scratch/fuzz.sqlite3"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TEST_DATABASE_NAME

"$py" -m django migrate --verbosity 0
token=$("$py" -m django shell --verbosity 0 -c '
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from django_taskqueue.taskqueue import Queue, Task
user = User.objects.create_superuser("fuzz", "consumer@example.com", "fuzz")
for queue in ("pull-queue", "pull-acl"):
    Queue(queue).add([Task(b"x", method="PULL", name=f"task-{i}", tag="t") for i in range(20)])
print(Token.objects.create(user=user).key)
')

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$py" -m django runserver --noreload "127.0.0.1:$port" >"$scratch/server.log" 2>&1 &
server=$!

# The queue path parameter is pinned to a pull queue, so generated requests reach leasing,
# inserts and deletes instead of stopping at unknown_queue (the pytest suite covers those).
cat >"$scratch/schemathesis.toml" <<'TOML'
[parameters]
"path.queue" = "pull-queue"
TOML

status=0
# From the scratch directory: schemathesis keeps a cache in the working directory.
root=$PWD
cd "$scratch"
"$root/.venv/bin/schemathesis" --config-file "$scratch/schemathesis.toml" run "http://127.0.0.1:$port/taskqueue/api/schema/?format=json" \
    --wait-for-schema 30 \
    --checks not_a_server_error,response_schema_conformance \
    --header "Authorization: Token $token" \
    --max-examples "${FUZZ_MAX_EXAMPLES:-30}" \
    --phases examples,coverage,fuzzing \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    "$@" || status=$?
cd "$root"

if ((status != 0)); then
    echo "fuzz_api: schemathesis failed (exit status $status); server log:" >&2
    tail -n 50 "$scratch/server.log" >&2
fi
exit "$status"
