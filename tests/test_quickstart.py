"""The README's Quick start, pasted into a brand-new `startproject`, runs its task.

The test reads the Quick start section of README.md and applies each block as a reader would:

* a block whose first line names a file (`# mysite/tasks.py`) is that file, whole; one that
  says `: add at the end` is appended to it;
* a Python block without a file name is run in `manage.py shell`;
* shell lines are run in the project's directory (`pip install` installs this checkout).

How the package is installed: a throwaway virtual environment gets the package built as a
wheel from a copy of this checkout (`pip install --no-deps`), so what is tested is what a
user installs (packaging, templates and migrations included). Its dependencies (Django, DRF,
…) come from the suite's own environment through a `.pth` file instead of being downloaded:
installing them afresh would take a network and a minute for nothing this test is about. The
project uses its own SQLite database, as `startproject` makes it, whatever database the suite
runs on: that is what a reader of the Quick start gets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

PROJECT = "mysite"
_IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "bench",
    "*.sqlite3*",
)


def quick_start_blocks() -> list[tuple[str, str]]:
    """Return the fenced blocks of the README's Quick start as (language, text)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quickstart-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_quick_start_runs_its_task(venv, tmp_path):
    python = str(venv)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "TASKQUEUE_", "DATABASE_URL", "PYTHON", "TEST_DATABASE"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    project = tmp_path / "project"
    project.mkdir()
    run([python, "-m", "django", "startproject", PROJECT, str(project)], tmp_path, env)

    blocks = quick_start_blocks()
    assert blocks, "README.md has no Quick start blocks"
    outputs: dict[str, str] = {}
    for language, text in blocks:
        first = text.splitlines()[0]
        named = re.fullmatch(r"# ([\w./-]+\.(?:py|yaml))(: add at the end)?", first.strip())
        if language == "sh":
            for line in filter(None, (line.strip() for line in text.splitlines())):
                if line.startswith("pip install"):
                    checkout = tmp_path / "checkout"
                    shutil.copytree(REPO_ROOT, checkout, ignore=_IGNORED)
                    run(
                        [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
                        + ["--no-deps", "--disable-pip-version-check", str(checkout)],
                        tmp_path,
                        env,
                    )
                    continue
                command = line.split()
                assert command[:2] == ["python", "manage.py"], line
                if command[2] == "runtaskworker":
                    command.append("--burst")  # the README's worker runs until stopped
                result = run([python, *command[1:]], project, env)
                outputs[command[2]] = result.stdout + result.stderr
        elif named:
            path = project / named.group(1)
            if named.group(2):
                with open(path, "a", encoding="utf-8") as f:
                    f.write("\n" + text)
            else:
                path.write_text(text, encoding="utf-8")
        else:
            assert language == "python", (language, first)
            run([python, "manage.py", "shell", "-c", text], project, env)

    located = run(
        [python, "-c", "import django_taskqueue; print(django_taskqueue.__file__)"], tmp_path, env
    ).stdout
    assert str(venv.parent.parent) in located  # installed from the checkout, not the suite's
    assert "migrate" in outputs and "runtaskworker" in outputs
    worker = outputs["runtaskworker"]
    assert "Sending the welcome mail to user 42" in worker, worker
    assert "status=succeeded" in worker, worker
    checked = run([python, "manage.py", "check"], project, env).stdout
    assert "no issues" in checked, checked
