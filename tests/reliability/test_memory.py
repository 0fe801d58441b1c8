"""A worker's memory is flat over tens of thousands of in-process attempts.

The worker runs in a child process (its memory is the subject) with tracemalloc on; the test
compares what is traced once the worker has warmed up with what is traced at the end. A leak of
the size this guards against (a hook left behind per attempt, about 0.7 KB each) adds over ten
megabytes across the run; the bound allows a few hundred kilobytes of caches settling.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASKS = 20_000
SAMPLE_EVERY = 2_000
#: Growth allowed between the first sample after warm-up and the last: 25 bytes per attempt.
MAX_GROWTH_BYTES = 500_000


#: Two threads: the attempts run on the pool's threads, each with its own connections.
CONCURRENCY = 2


def test_worker_memory_is_flat_over_many_attempts(child_env):
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.memory_worker",
            str(TASKS),
            str(SAMPLE_EVERY),
            str(CONCURRENCY),
        ],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-5000:]
    samples = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    assert samples and samples[-1]["attempts"] == TASKS, child.stdout[-2000:]
    # The first samples include the caches every process fills once (URL resolver, middleware,
    # prepared statements, logging): measure from the second one on.
    baseline, last = samples[1], samples[-1]
    growth = last["traced"] - baseline["traced"]
    per_attempt = growth / (last["attempts"] - baseline["attempts"])
    print(
        f"traced {baseline['traced']} -> {last['traced']} bytes "
        f"({per_attempt:.1f} B/attempt); rss {baseline['rss']} -> {last['rss']} bytes"
    )
    assert growth < MAX_GROWTH_BYTES, (
        f"the worker's traced memory grew by {growth} bytes over "
        f"{last['attempts'] - baseline['attempts']} attempts: {samples}"
    )
