"""Retry policy against App Engine's documented examples and the stub's rules."""

from __future__ import annotations

import pytest

from django_taskqueue.exceptions import InvalidTaskRetryOptionsError
from django_taskqueue.retry import (
    DEFAULT_RETRY_PARAMETERS,
    RetryParameters,
    backoff_seconds,
    can_retry,
    effective_retry_parameters,
    may_lease_again,
    parse_age_limit,
)

DAY = 86400

BAZQUEUE = RetryParameters(min_backoff_seconds=10, max_backoff_seconds=300, max_doublings=3)
BARQUEUE = RetryParameters(min_backoff_seconds=10, max_backoff_seconds=200, max_doublings=0)
FOOQUEUE = RetryParameters(task_retry_limit=7, task_age_limit=2 * DAY)

# reference/gae-taskqueue.md §4.4, the worked table: k -> (defaults, bazqueue, barqueue).
WORKED_TABLE = {
    1: (0.1, 10, 10),
    2: (0.2, 20, 20),
    3: (0.4, 40, 30),
    4: (0.8, 80, 40),
    5: (1.6, 160, 50),
    6: (3.2, 240, 60),
    7: (6.4, 300, 70),
    10: (51.2, 300, 100),
    16: (3276.8, 300, 160),
    17: (3600, 300, 170),
}


@pytest.mark.parametrize(("failures", "expected"), WORKED_TABLE.items())
def test_backoff_matches_worked_table(failures: int, expected: tuple[float, float, float]) -> None:
    defaults, baz, bar = expected
    assert backoff_seconds(DEFAULT_RETRY_PARAMETERS, failures) == defaults
    assert backoff_seconds(BAZQUEUE, failures) == baz
    assert backoff_seconds(BARQUEUE, failures) == bar


def test_backoff_documented_sequences() -> None:
    # [D-retry]: barqueue 10s, 20s, 30s, ..., 190s, 200s, 200s; bazqueue 10, 20, 40, 80, 160,
    # 240, 300, 300.
    assert [backoff_seconds(BARQUEUE, k) for k in range(1, 23)] == [
        *range(10, 201, 10),
        200,
        200,
    ]
    assert [backoff_seconds(BAZQUEUE, k) for k in range(1, 9)] == [
        10,
        20,
        40,
        80,
        160,
        240,
        300,
        300,
    ]


def test_backoff_defaults_cap_at_one_hour_forever() -> None:
    assert backoff_seconds(DEFAULT_RETRY_PARAMETERS, 18) == 3600
    assert backoff_seconds(DEFAULT_RETRY_PARAMETERS, 10**6) == 3600
    huge = RetryParameters(max_doublings=10**6)
    assert backoff_seconds(huge, 10**5) == 3600


def test_backoff_with_zero_minimum_is_zero() -> None:
    params = RetryParameters(min_backoff_seconds=0)
    assert backoff_seconds(params, 1) == 0
    assert backoff_seconds(params, 30) == 0


def test_backoff_min_above_max_is_capped() -> None:
    # A task may set only min_backoff_seconds above the default maximum.
    assert backoff_seconds(RetryParameters(min_backoff_seconds=5000), 1) == 3600


def test_backoff_needs_a_failure() -> None:
    with pytest.raises(ValueError):
        backoff_seconds(DEFAULT_RETRY_PARAMETERS, 0)


def test_can_retry_without_limits_always() -> None:
    assert can_retry(DEFAULT_RETRY_PARAMETERS, 10**6, 365 * DAY)


def test_can_retry_retry_limit_only() -> None:
    params = RetryParameters(task_retry_limit=3)
    assert can_retry(params, 3, 10 * DAY)
    assert not can_retry(params, 4, 0)


def test_can_retry_zero_retry_limit_never_retries() -> None:
    assert not can_retry(RetryParameters(task_retry_limit=0), 1, 0)


def test_can_retry_age_limit_only() -> None:
    params = RetryParameters(task_age_limit=60)
    assert can_retry(params, 1000, 60)
    assert not can_retry(params, 1, 60.5)


def test_fooqueue_stops_only_when_both_limits_are_exceeded() -> None:
    # "retried up to seven times and for up to two days from the first execution attempt.
    # After both limits are passed, it fails permanently."
    assert can_retry(FOOQUEUE, 7, 3 * DAY)  # count within, age past
    assert can_retry(FOOQUEUE, 50, DAY)  # count past, age within
    assert can_retry(FOOQUEUE, 8, 2 * DAY)  # age exactly at the limit still counts as within
    assert not can_retry(FOOQUEUE, 8, 2 * DAY + 1)


def test_task_options_replace_queue_parameters_wholly() -> None:
    queue = RetryParameters(task_retry_limit=5, min_backoff_seconds=30, max_doublings=2)
    params = effective_retry_parameters({"max_backoff_seconds": 60}, queue)
    # The task's one option applies; everything else is the proto default, not the queue's.
    assert params == RetryParameters(max_backoff_seconds=60)
    assert params.task_retry_limit is None


def test_queue_parameters_apply_when_task_sets_none() -> None:
    queue = RetryParameters(task_retry_limit=5)
    assert effective_retry_parameters(None, queue) is queue
    assert effective_retry_parameters({}, queue) is queue
    assert effective_retry_parameters({"task_retry_limit": None}, queue) is queue


def test_defaults_apply_when_nothing_is_set() -> None:
    assert effective_retry_parameters(None, None) == RetryParameters(
        task_retry_limit=None,
        task_age_limit=None,
        min_backoff_seconds=0.1,
        max_backoff_seconds=3600.0,
        max_doublings=16,
    )


def test_task_option_equal_to_a_default_still_counts_as_set() -> None:
    queue = RetryParameters(task_retry_limit=5)
    assert effective_retry_parameters({"max_doublings": 16}, queue).task_retry_limit is None


def test_to_dict_keeps_only_set_options_and_round_trips() -> None:
    params = RetryParameters(task_retry_limit=0, task_age_limit=60, max_doublings=3)
    assert params.to_dict() == {"task_retry_limit": 0, "task_age_limit": 60, "max_doublings": 3}
    assert RetryParameters.from_dict(params.to_dict()) == params
    assert DEFAULT_RETRY_PARAMETERS.to_dict() == {}
    assert RetryParameters.from_dict({}) == DEFAULT_RETRY_PARAMETERS
    assert RetryParameters.from_dict(None) == DEFAULT_RETRY_PARAMETERS


def test_from_dict_rounds_a_fractional_age_limit_up() -> None:
    assert RetryParameters.from_dict({"task_age_limit": 1.2}).task_age_limit == 2


@pytest.mark.parametrize(
    "options",
    [
        {"min_backoff_seconds": -1},
        {"max_backoff_seconds": -0.5},
        {"max_doublings": -1},
        {"task_retry_limit": -1},
        {"task_age_limit": -1},
        {"task_retry_limit": "3"},
        {"max_doublings": True},
        {"min_backoff_seconds": float("nan")},
        {"retries": 3},
    ],
)
def test_from_dict_rejects_invalid_options(options: dict) -> None:
    with pytest.raises(InvalidTaskRetryOptionsError):
        RetryParameters.from_dict(options)


def test_pull_lease_limit_counts_leases() -> None:
    params = RetryParameters(task_retry_limit=2)
    assert may_lease_again(params, 0)
    assert may_lease_again(params, 1)
    assert not may_lease_again(params, 2)


def test_pull_lease_limit_zero_allows_no_lease() -> None:
    assert not may_lease_again(RetryParameters(task_retry_limit=0), 0)


def test_pull_lease_unlimited_and_age_limit_ignored() -> None:
    assert may_lease_again(DEFAULT_RETRY_PARAMETERS, 10**6)
    assert may_lease_again(RetryParameters(task_age_limit=1), 10**6)
    assert not may_lease_again(RetryParameters(task_retry_limit=1, task_age_limit=10**6), 1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("30m", 1800),
        ("1.5h", 5400),
        ("1.1h", 3960),
        ("2d", 2 * DAY),
        ("0.5s", 1),
        ("1.01s", 2),
        (".5m", 30),
        (" 3d ", 3 * DAY),
    ],
)
def test_parse_age_limit(text: str, seconds: int) -> None:
    assert parse_age_limit(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "0s", "0.0d", "-1s", "2w", "d", "1.5.2h", "2 d", 10])
def test_parse_age_limit_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_age_limit(text)
