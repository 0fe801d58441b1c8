#!/usr/bin/env bash
# Create .venv (Python 3.11+) if missing and install the project with its dev extra into it.
# EXTRAS names other extras instead (scripts/demo.sh: VENV=.venv-demo EXTRAS=demo), and
# LEAN=1 makes a quick environment for running, not developing: no pip of its own (the
# interpreter's pip, 22.3 or newer, installs into it; else venv's pip, not upgraded) and no .pyc
# compiled ahead (Python compiles what it imports). Creating pip in a venv and compiling every
# file of Django take longer than installing the packages.
# Quick when nothing changed: pip runs only when pyproject.toml (or the interpreter) changed.
# Used by scripts/test.sh, scripts/demo.sh and .ci/run; `bash scripts/bootstrap.sh` works alone.
#
# Another environment beside it, for the Django version matrix:
#   VENV=.venv-dj6 PYTHON=python3.12 DJANGO_REQUIREMENT='django>=6,<7' bash scripts/bootstrap.sh
# VENV names the directory, PYTHON the interpreter that creates it, DJANGO_REQUIREMENT a pip
# requirement for Django installed with the project (default: what pyproject.toml allows).
# PG_DRIVER=psycopg2 replaces psycopg 3 with psycopg2 in it (Django uses either), e.g.
#   VENV=.venv-psycopg2 PG_DRIVER=psycopg2 bash scripts/bootstrap.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${VENV:-.venv}
django_requirement=${DJANGO_REQUIREMENT:-}
extras=${EXTRAS:-dev}
stamp="$venv/.django-taskqueue-install"

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

if [[ -e "$venv" ]] && ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    >/dev/null 2>&1; then
    echo "bootstrap: $venv is broken or older than Python 3.11; recreating it" >&2
    rm -rf "$venv"
fi

if [[ ! -e "$venv" ]]; then
    if ! python=$(find_python); then
        echo "bootstrap: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.x)" >&2
        exit 1
    fi
    echo "bootstrap: creating $venv with $python"
    # pip's --python wants a path, not a command name.
    if [[ "${LEAN:-0}" == 1 ]] &&
        "$python" -m pip --python "$(command -v "$python")" --version >/dev/null 2>&1; then
        "$python" -m venv --without-pip "$venv"
    else
        "$python" -m venv "$venv"
        if [[ "${LEAN:-0}" != 1 ]]; then
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        fi
    fi
fi

# What the install depends on: the project metadata, this checkout's path, the interpreter.
wanted=$("$venv/bin/python" - <<'PY'
import hashlib, os, sys
digest = hashlib.sha256(open("pyproject.toml", "rb").read())
digest.update(os.getcwd().encode())
digest.update(sys.version.encode())
digest.update(os.environ.get("DJANGO_REQUIREMENT", "").encode())
digest.update(os.environ.get("EXTRAS", "dev").encode())
digest.update(os.environ.get("PG_DRIVER", "").encode())
print(digest.hexdigest())
PY
)

if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    pip=("$venv/bin/python" -m pip)
    if [[ ! -e "$venv/bin/pip" ]]; then  # a lean environment: the interpreter's pip serves it
        if ! python=$(find_python) || ! "$python" -m pip --python "$venv/bin/python" --version \
            >/dev/null 2>&1; then
            echo "bootstrap: $venv has no pip and no pip 22.3+ can install into it; remove $venv" >&2
            exit 1
        fi
        pip=("$python" -m pip --python "$venv/bin/python")
    fi
    pip_base=("${pip[@]}")
    if [[ "${LEAN:-0}" == 1 ]]; then
        pip+=(install --no-compile)
    else
        pip+=(install)
    fi
    echo "bootstrap: installing -e '.[$extras]' into $venv"
    "${pip[@]}" --quiet --disable-pip-version-check -e ".[$extras]" \
        ${django_requirement:+"$django_requirement"}
    if [[ "${PG_DRIVER:-}" == psycopg2 ]]; then
        # Django picks psycopg 3 when it is installed: it goes, psycopg2 comes.
        echo "bootstrap: replacing psycopg 3 with psycopg2 in $venv (PG_DRIVER=psycopg2)"
        "${pip_base[@]}" uninstall --quiet --yes psycopg psycopg-binary
        "${pip[@]}" --quiet --disable-pip-version-check psycopg2-binary
    elif [[ -n "${PG_DRIVER:-}" ]]; then
        echo "bootstrap: PG_DRIVER must be psycopg2 or unset, not ${PG_DRIVER}" >&2
        exit 1
    fi
    printf '%s\n' "$wanted" >"$stamp"
fi
