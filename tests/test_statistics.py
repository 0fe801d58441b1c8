"""QueueStatistics fed by the worker: the figures a push queue's attempts leave."""

from __future__ import annotations

import pytest

from django_taskqueue.dispatch.worker import Worker
from django_taskqueue.taskqueue import Queue, Task

pytestmark = pytest.mark.django_db


class TestStatistics:
    def test_worker_feeds_fetch_statistics(self, recorder, frozen_clock):
        Queue("default").add([Task(url="/echo") for _ in range(3)])
        worker = Worker(["default"], burst=True, run_sweeps=False)
        assert worker.run() == 3
        stats = Queue("default").fetch_statistics()
        assert stats.executed_last_minute == 3
        assert stats.in_flight == 0
        assert stats.enforced_rate == pytest.approx(0.3)  # 3 tasks just now, over 10 s
