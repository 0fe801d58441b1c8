#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite: bash scripts/test.sh [pytest arguments]
# DATABASE_URL chooses the database (default: a SQLite file in the temp directory), e.g.
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/taskqueue bash scripts/test.sh
#   DATABASE_URL=mysql://root@127.0.0.1:3306/taskqueue bash scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
