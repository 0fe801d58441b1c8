"""The settings that find dead workers: checked, so a worker is never taken for dead while alive."""

from __future__ import annotations

import pytest

from .test_configuration import ids


@pytest.mark.parametrize(
    "taskqueue, expected",
    [
        ({"HEARTBEAT_INTERVAL_SECONDS": 0}, "E054"),
        ({"HEARTBEAT_INTERVAL_SECONDS": "5"}, "E054"),
        ({"WORKER_TIMEOUT_SECONDS": 0.01}, "E054"),
        ({"WORKER_TIMEOUT_SECONDS": float("nan")}, "E054"),
        # One late beat would make a live worker dead.
        ({"HEARTBEAT_INTERVAL_SECONDS": 5, "WORKER_TIMEOUT_SECONDS": 9}, "E054"),
        ({"MAX_WORKER_LOSSES": 0}, "E055"),
        ({"MAX_WORKER_LOSSES": 2.5}, "E055"),
        ({"MAX_WORKER_LOSSES": True}, "E055"),
    ],
)
def test_heartbeat_settings_that_cannot_work_fail_check(settings, taskqueue, expected):
    assert ids(settings, **taskqueue) == [f"django_taskqueue.{expected}"]


def test_the_defaults_and_short_test_values_pass(settings):
    assert ids(settings) == []
    assert (
        ids(
            settings,
            HEARTBEAT_INTERVAL_SECONDS=0.2,
            WORKER_TIMEOUT_SECONDS=1,
            RESCUE_INTERVAL_SECONDS=0.2,
            MAX_WORKER_LOSSES=1,
        )
        == []
    )
