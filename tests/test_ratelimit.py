"""The token bucket arithmetic (pure functions, no database)."""

import datetime
import math

import pytest

from django_taskqueue.ratelimit import (
    available,
    measured_rate,
    refill,
    seconds_until_token,
)

T0 = datetime.datetime(2025, 1, 15, 12, 0, tzinfo=datetime.UTC)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


class TestRefill:
    def test_a_new_bucket_is_full(self):
        assert refill(0.0, None, T0, 5.0, 5) == 5.0

    def test_refills_at_rate(self):
        assert refill(0.0, T0, at(0.5), 20.0, 1) == pytest.approx(1.0)
        assert refill(0.0, T0, at(0.02), 20.0, 1) == pytest.approx(0.4)
        assert refill(1.5, T0, at(1), 2.0, 10) == pytest.approx(3.5)

    def test_never_exceeds_bucket_size(self):
        assert refill(0.0, T0, at(3600), 500.0, 500) == 500.0
        assert refill(4.0, T0, at(10), 5.0, 5) == 5.0

    def test_a_clock_behind_adds_nothing(self):
        assert refill(2.0, at(10), T0, 5.0, 5) == 2.0

    def test_rate_zero_never_refills(self):
        assert refill(0.0, T0, at(1000), 0.0, 5) == 0.0

    def test_debt_is_paid_back_over_time(self):
        # A level below zero is not produced by claims, but refill still adds linearly.
        assert refill(-1.0, T0, at(1), 1.0, 5) == pytest.approx(0.0)


class TestAvailable:
    @pytest.mark.parametrize(
        ("tokens", "whole"), [(0.0, 0), (0.99, 0), (1.0, 1), (0.9999999999, 1), (4.7, 4), (-2, 0)]
    )
    def test_whole_tokens(self, tokens, whole):
        assert available(tokens) == whole


class TestSecondsUntilToken:
    def test_zero_when_a_token_is_there(self):
        assert seconds_until_token(1.0, 5.0) == 0.0

    def test_time_to_the_next_token(self):
        assert seconds_until_token(0.0, 20.0) == pytest.approx(0.05)
        assert seconds_until_token(0.5, 5.0) == pytest.approx(0.1)

    def test_never_at_rate_zero(self):
        assert seconds_until_token(0.0, 0.0) is None

    def test_bucket_spends_rate_over_time(self):
        # Simulate 20/s, bucket 1: 60 dispatches need 59 refills of one token.
        tokens, now, dispatched = refill(0.0, None, T0, 20.0, 1), T0, 0
        while dispatched < 60:
            tokens = refill(tokens, now, now, 20.0, 1)
            if available(tokens):
                tokens -= 1
                dispatched += 1
                continue
            wait = seconds_until_token(tokens, 20.0)
            tokens = refill(tokens, now, now + datetime.timedelta(seconds=wait), 20.0, 1)
            now += datetime.timedelta(seconds=wait)
        assert (now - T0).total_seconds() == pytest.approx(59 / 20)


class TestMeasuredRate:
    def test_first_dispatches(self):
        assert measured_rate(None, None, T0, 5) == pytest.approx(0.5)

    def test_steady_dispatch_reads_as_its_rate(self):
        rate, at = None, None
        for step in range(600):  # 4 tasks every 0.5 s for five minutes: 8/s
            now = T0 + datetime.timedelta(seconds=step * 0.5)
            rate, at = measured_rate(rate, at, now, 4), now
        # Read just after a dispatch, it is a little high (8.2); between dispatches it averages 8.
        assert rate == pytest.approx(8.0, rel=0.03)

    def test_an_idle_queue_falls_towards_zero(self):
        rate = measured_rate(8.0, T0, T0 + datetime.timedelta(seconds=60), 0)
        assert rate == pytest.approx(8.0 * math.exp(-6))

    def test_a_clock_behind_does_not_inflate_it(self):
        assert measured_rate(2.0, T0, T0 - datetime.timedelta(seconds=5), 0) == 2.0
