"""App Engine's cron schedule grammar: the documented examples' next run times, errors, DST.

Pure functions: no database.
"""

import datetime

import pytest

from django_taskqueue.cron.schedule import (
    IntervalSchedule,
    ScheduleError,
    describe,
    next_run_after,
    next_runs,
    parse,
    previous_run_at_or_before,
)

UTC = datetime.UTC
# A Sunday, 12:03 UTC.
START = datetime.datetime(2026, 3, 1, 12, 3, tzinfo=UTC)


def at(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


def runs(text: str, zone: str = "UTC", count: int = 4, after: datetime.datetime = START):
    return next_runs(parse(text), after, zone, count)


# The examples of App Engine's cron.yaml reference, each with its next runs after START.
DOCUMENTED = [
    ("every 12 hours", [at(2026, 3, 2, 0, 0), at(2026, 3, 2, 12, 0), at(2026, 3, 3, 0, 0)]),
    ("every 24 hours", [at(2026, 3, 2), at(2026, 3, 3), at(2026, 3, 4)]),
    (
        "every 5 minutes from 10:00 to 14:00",
        [at(2026, 3, 1, 12, 5), at(2026, 3, 1, 12, 10), at(2026, 3, 1, 12, 15)],
    ),
    (
        "every 2 hours from 10:00 to 14:00",
        [at(2026, 3, 1, 14, 0), at(2026, 3, 2, 10, 0), at(2026, 3, 2, 12, 0), at(2026, 3, 2, 14)],
    ),
    ("every day 00:00", [at(2026, 3, 2), at(2026, 3, 3), at(2026, 3, 4)]),
    ("every monday 09:00", [at(2026, 3, 2, 9), at(2026, 3, 9, 9), at(2026, 3, 16, 9)]),
    (
        "every mon,wednesday 09:00",
        [at(2026, 3, 2, 9), at(2026, 3, 4, 9), at(2026, 3, 9, 9), at(2026, 3, 11, 9)],
    ),
    # March 2026: Mondays 2, 9, 16, 23, 30; Wednesdays 4, 11, 18, 25; Thursdays 5, 12, 19, 26.
    (
        "2nd,third mon,wed,thu of march 17:00",
        [
            at(2026, 3, 9, 17),
            at(2026, 3, 11, 17),
            at(2026, 3, 12, 17),
            at(2026, 3, 16, 17),
            at(2026, 3, 18, 17),
            at(2026, 3, 19, 17),
            at(2027, 3, 8, 17),
        ],
    ),
    (
        "1st monday of sep,oct,nov 17:00",
        [at(2026, 9, 7, 17), at(2026, 10, 5, 17), at(2026, 11, 2, 17), at(2027, 9, 6, 17)],
    ),
    (
        "1 of jan,april,july,oct 00:00",
        [at(2026, 4, 1), at(2026, 7, 1), at(2026, 10, 1), at(2027, 1, 1)],
    ),
    (
        "every 2 hours synchronized",
        [at(2026, 3, 1, 14), at(2026, 3, 1, 16), at(2026, 3, 1, 18), at(2026, 3, 1, 20)],
    ),
    (
        "every 5 minutes synchronized",
        [at(2026, 3, 1, 12, 5), at(2026, 3, 1, 12, 10), at(2026, 3, 1, 12, 15)],
    ),
    # `of month`, ordinals in words and figures, the 1st, 3rd Monday of every month.
    ("every mon of month 10:00", [at(2026, 3, 2, 10), at(2026, 3, 9, 10), at(2026, 3, 16, 10)]),
    (
        "1st,3rd monday of month 10:00",
        [at(2026, 3, 2, 10), at(2026, 3, 16, 10), at(2026, 4, 6, 10), at(2026, 4, 20, 10)],
    ),
    ("first sunday 08:30", [at(2026, 4, 5, 8, 30), at(2026, 5, 3, 8, 30), at(2026, 6, 7, 8, 30)]),
    ("1,15 of month 09:00", [at(2026, 3, 15, 9), at(2026, 4, 1, 9), at(2026, 4, 15, 9)]),
    ("2nd day of month 06:00", [at(2026, 3, 2, 6), at(2026, 4, 2, 6), at(2026, 5, 2, 6)]),
    (
        "1st mon of quarter 09:00",
        [at(2026, 4, 6, 9), at(2026, 7, 6, 9), at(2026, 10, 5, 9), at(2027, 1, 4, 9)],
    ),
    (
        "1 of 2nd month of quarter 00:00",
        [at(2026, 5, 1), at(2026, 8, 1), at(2026, 11, 1), at(2027, 2, 1)],
    ),
    # A range that crosses midnight.
    (
        "every 1 hours from 23:00 to 01:00",
        [at(2026, 3, 1, 23), at(2026, 3, 2, 0), at(2026, 3, 2, 1), at(2026, 3, 2, 23)],
    ),
    ("EVERY Monday 9:00", [at(2026, 3, 2, 9), at(2026, 3, 9, 9)]),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENTED)
def test_documented_examples_next_runs(text, expected):
    assert runs(text, count=len(expected)) == expected


def test_plain_intervals_count_from_the_epoch_so_every_worker_agrees():
    schedule = parse("every 7 minutes")
    assert schedule == IntervalSchedule(420)
    first = next_run_after(schedule, START)
    assert first is not None and first.timestamp() % 420 == 0
    assert 0 < (first - START).total_seconds() <= 420
    assert runs("every 7 minutes", count=3) == [
        first,
        first + datetime.timedelta(minutes=7),
        first + datetime.timedelta(minutes=14),
    ]


def test_next_run_is_strictly_after_and_previous_is_at_or_before():
    schedule = parse("every day 12:00")
    noon = at(2026, 3, 1, 12)
    assert next_run_after(schedule, noon) == at(2026, 3, 2, 12)
    assert previous_run_at_or_before(schedule, noon) == noon
    assert previous_run_at_or_before(schedule, noon - datetime.timedelta(seconds=1)) == at(
        2026, 2, 28, 12
    )
    every = parse("every 5 minutes")
    assert previous_run_at_or_before(every, at(2026, 3, 1, 12, 7, 30)) == at(2026, 3, 1, 12, 5)


def test_timezone_of_the_documented_example():
    # "every monday 09:00" in Australia/NSW (UTC+11 in March, daylight saving time).
    assert runs("every monday 09:00", "Australia/NSW", 2) == [
        at(2026, 3, 1, 22),
        at(2026, 3, 8, 22),
    ]


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("", 0, "empty"),
        ("every", 5, "ends too early"),
        ("every mon", 9, "ends too early"),
        ("every 5 fortnights", 8, "'minutes' or 'hours'"),
        ("every 0 minutes", 6, "at least 1"),
        ("every 25 hours", 6, "longer than 24 hours"),
        ("every 7 hours synchronized", 6, "divide 24 hours"),
        ("every 5 minutes from 10:00 until 14:00", 27, "expected 'to'"),
        ("every 5 minutes from 10:00 to 24:00", 30, "not a time of day"),
        ("every monday", 12, "ends too early"),
        ("every monday 9am", 13, "HH:MM"),
        ("every mondays 09:00", 6, "day of the week"),
        ("2nd,sixth mon 10:00", 4, "ordinal"),
        ("1st monday of sep,oct,nox 17:00", 22, "month"),
        ("32 of jan 00:00", 0, "day of the month"),
        ("1 jan 00:00", 2, "'of'"),
        ("1st mon of 4th month of quarter 00:00", 11, "three months"),
        ("every monday 09:00 sharp", 19, "unexpected 'sharp'"),
        ("daily 09:00", 0, "expected 'every'"),
    ],
)
def test_malformed_schedules_name_the_position(text, position, words):
    with pytest.raises(ScheduleError) as info:
        parse(text)
    assert info.value.position == position, str(info.value)
    assert words in str(info.value)
    assert f"at character {position + 1}" in str(info.value)


def test_a_schedule_that_never_runs_has_no_next_run():
    assert next_run_after(parse("31 of feb 10:00"), START) is None


def test_describe_in_words():
    assert describe(parse("every 5 minutes")) == "every 5 minutes"
    assert describe(parse("every 1 hours")) == "every hour"
    assert describe(parse("every 5 minutes from 10:00 to 14:00")) == (
        "every 5 minutes from 10:00 to 14:00"
    )
    assert describe(parse("every 2 hours synchronized")) == (
        "every 2 hours, on the hour from 00:00 local time"
    )
    assert describe(parse("every day 00:00")) == "at 00:00 every day"
    assert describe(parse("every mon,wed 09:00")) == "at 09:00 every Monday and Wednesday"
    assert describe(parse("1st,3rd monday of sep,oct,nov 17:00")) == (
        "at 17:00 on the 1st and 3rd Monday of September, October and November"
    )
    assert describe(parse("1,15 of month 09:00")) == "at 09:00 on day 1 and 15 of the month"


# Daylight saving time, America/New_York 2026: clocks go 02:00 EST -> 03:00 EDT on March 8 and
# 02:00 EDT -> 01:00 EST on November 1.
NY = "America/New_York"


def test_dst_spring_a_nonexistent_local_time_runs_shifted_by_the_gap():
    assert runs("every day 02:30", NY, 3, after=at(2026, 3, 7)) == [
        at(2026, 3, 7, 7, 30),  # 02:30 EST
        at(2026, 3, 8, 7, 30),  # 02:30 does not exist: 03:30 EDT
        at(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]


def test_dst_autumn_an_ambiguous_local_time_runs_once_at_its_first_occurrence():
    assert runs("every day 01:30", NY, 3, after=at(2026, 10, 31)) == [
        at(2026, 10, 31, 5, 30),  # 01:30 EDT
        at(2026, 11, 1, 5, 30),  # 01:30 EDT, not again at 01:30 EST
        at(2026, 11, 2, 6, 30),  # 01:30 EST
    ]


def test_dst_local_interval_through_the_repeated_hour_runs_each_local_time_once():
    assert runs("every 30 minutes from 01:00 to 03:00", NY, 5, after=at(2026, 11, 1)) == [
        at(2026, 11, 1, 5, 0),  # 01:00 EDT
        at(2026, 11, 1, 5, 30),  # 01:30 EDT
        at(2026, 11, 1, 7, 0),  # 02:00 EST
        at(2026, 11, 1, 7, 30),  # 02:30 EST
        at(2026, 11, 1, 8, 0),  # 03:00 EST
    ]


def test_dst_local_interval_through_the_skipped_hour_never_runs_one_instant_twice():
    assert runs("every 30 minutes from 01:00 to 03:00", NY, 5, after=at(2026, 3, 8)) == [
        at(2026, 3, 8, 6, 0),  # 01:00 EST
        at(2026, 3, 8, 6, 30),  # 01:30 EST
        at(2026, 3, 8, 7, 0),  # 02:00 (skipped) and 03:00 EDT: one run
        at(2026, 3, 8, 7, 30),  # 02:30 (skipped): 03:30 EDT
        at(2026, 3, 9, 5, 0),  # next day 01:00 EDT
    ]


def test_dst_does_not_touch_plain_intervals():
    hourly = runs("every 1 hours", NY, 4, after=at(2026, 11, 1, 4, 30))
    assert hourly == [at(2026, 11, 1, h) for h in (5, 6, 7, 8)]


def test_previous_run_across_dst():
    schedule = parse("every day 02:30")
    assert previous_run_at_or_before(schedule, at(2026, 3, 8, 12), NY) == at(2026, 3, 8, 7, 30)
