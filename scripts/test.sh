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
# The admin's browser tests drive Debian's chromium. This script installs nothing outside the
# checkout: if chromium is missing it says so, and those tests fail with the same advice.
# Continuous integration (.ci/run) installs it before running the suite.
if ! command -v "${TASKQUEUE_TEST_CHROMIUM:-chromium}" >/dev/null 2>&1; then
    echo "test: chromium is not installed: the admin's browser tests (tests/admin/test_admin_browser.py)" >&2
    echo "test: will fail. Install Debian's package (sudo apt-get install chromium), or leave" >&2
    echo "test: them out with: bash scripts/test.sh --deselect tests/admin/test_admin_browser.py" >&2
fi
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
