#!/usr/bin/env bash
# Set up and run the example project: bash scripts/demo.sh
# Creates .venv, migrates the database (SQLite unless DATABASE_URL says otherwise), creates the
# superuser admin/admin, starts a task worker in the background and the development server at
# http://127.0.0.1:8000 (DEMO_ADDR=host:port to change). Ctrl-C stops both.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh

python=.venv/bin/python
export DJANGO_SETTINGS_MODULE=example_project.settings

"$python" manage.py migrate --noinput

if ! "$python" manage.py shell --verbosity 0 -c '
import sys
from django.contrib.auth import get_user_model
sys.exit(0 if get_user_model().objects.filter(username="admin").exists() else 1)
'; then
    DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_PASSWORD=admin \
        DJANGO_SUPERUSER_EMAIL=admin@example.com \
        "$python" manage.py createsuperuser --noinput
    echo "demo: created superuser admin (password: admin)"
fi

worker_pid=""
stop_worker() {
    # SIGTERM is the worker's clean shutdown: no new work, in-flight tasks finish.
    if [[ -n "$worker_pid" ]]; then
        kill -TERM "$worker_pid" 2>/dev/null || true
        wait "$worker_pid" 2>/dev/null || true
    fi
}
trap stop_worker EXIT

# In a session of its own, Ctrl-C reaches only the server; stop_worker stops the worker.
if command -v setsid >/dev/null 2>&1; then
    setsid "$python" manage.py runtaskworker &
else
    "$python" manage.py runtaskworker &
fi
worker_pid=$!

echo "demo: task worker running (pid $worker_pid); open http://${DEMO_ADDR:-127.0.0.1:8000}/"
"$python" manage.py runserver "${DEMO_ADDR:-127.0.0.1:8000}"
