#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite: bash scripts/test.sh [pytest arguments]
# DATABASE_URL chooses the database (default: a SQLite file in the temp directory), e.g.
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/taskqueue bash scripts/test.sh
#   DATABASE_URL=mysql://root@127.0.0.1:3306/taskqueue bash scripts/test.sh
# VENV, PYTHON and DJANGO_REQUIREMENT choose another environment (see scripts/bootstrap.sh), e.g.
#   VENV=.venv-dj6 PYTHON=python3.12 DJANGO_REQUIREMENT='django>=6,<7' bash scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
# The admin's browser tests drive Debian's chromium; install it where we can (root with apt).
if ! command -v chromium >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing chromium for the admin's browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "test: chromium is missing; the browser tests will fail (apt-get install chromium)" >&2
    fi
fi
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
