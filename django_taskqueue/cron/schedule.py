"""App Engine's English cron schedules: a pure parser and the run times they give in a time zone.

The grammar (App Engine's `groc`), case-insensitive, words separated by spaces, lists by commas:

    every N (minutes|mins|hours) [from HH:MM to HH:MM | synchronized]
    (every | ORDINALS) (day | WEEKDAYS) [of MONTHS] HH:MM
    MONTHDAYS of MONTHS HH:MM

    ORDINALS   1st..5th or first..fifth, comma-separated ("2nd,third")
    WEEKDAYS   monday..sunday or mon..sun, comma-separated
    MONTHDAYS  1..31, comma-separated
    MONTHS     month | january..december or jan..dec, comma-separated | quarter |
               ORDINALS month of quarter   (first..third month of each quarter)

Meaning:

* `every N minutes|hours` runs every N minutes of real time, counted from the Unix epoch, so
  every worker computes the same slots without asking anyone (App Engine counted from the end
  of the previous run; see docs/decisions.md).
* `... from HH:MM to HH:MM` runs at the start time, then every N until the end time
  (inclusive), each day in the job's time zone; an end before the start crosses midnight.
* `... synchronized` runs every N from 00:00 local time; N must divide 24 hours evenly.
* `ORDINALS WEEKDAYS` are the Nth such weekdays of the month (`1st monday`); `ORDINALS day`
  the Nth days of the month. Without `of`, every month.

Daylight saving: local times are turned into instants with `fold=0`. A local time that does
not exist (the hour skipped in spring) runs the gap's length later, at the same instant the
following local time would; an ambiguous one (the hour repeated in autumn) runs once, at its
first occurrence. Two local times landing on one instant run once.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = [
    "IntervalSchedule",
    "Schedule",
    "ScheduleError",
    "SpecificSchedule",
    "describe",
    "next_run_after",
    "next_runs",
    "parse",
    "previous_run_at_or_before",
]

_DAY = 86400
#: How far the search for a run looks ahead or back (`5th monday of february` runs about once
#: every 6 years; `30 of february` never).
_SEARCH_DAYS = 366 * 12

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_ORDINALS = {
    "1st": 1,
    "first": 1,
    "2nd": 2,
    "second": 2,
    "3rd": 3,
    "third": 3,
    "4th": 4,
    "fourth": 4,
    "5th": 5,
    "fifth": 5,
}
_ORDINAL_WORDS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 5: "5th"}
_UNITS = {"minutes": 60, "minute": 60, "mins": 60, "min": 60, "hours": 3600, "hour": 3600}
_TIME_RE = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
_TOKEN_RE = re.compile(r",|[^\s,]+")


def _found(word: str | None) -> str:
    return f"found {word!r}" if word is not None else "but the schedule ends too early"


class ScheduleError(ValueError):
    """The schedule does not follow App Engine's grammar."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        #: 0-based index in the schedule text of the word that is wrong.
        self.position = position

    def __str__(self) -> str:
        return f"{self.message} (at character {self.position + 1})"


@dataclass(frozen=True)
class IntervalSchedule:
    """`every N minutes|hours`, optionally `from A to B` or `synchronized`."""

    period_seconds: int
    #: Seconds after local midnight of the range (`from`/`to`); None for plain intervals.
    start_seconds: int | None = None
    end_seconds: int | None = None
    synchronized: bool = False

    @property
    def in_local_time(self) -> bool:
        """Whether the runs are counted in the job's time zone (else from the Unix epoch)."""
        return self.start_seconds is not None


@dataclass(frozen=True)
class SpecificSchedule:
    """Given days at one time of day."""

    hour: int
    minute: int
    #: Months 1-12 the job runs in.
    months: frozenset[int]
    #: Weekdays 0 (Monday) to 6; None when the schedule names days of the month instead.
    weekdays: frozenset[int] | None = None
    #: Which of those weekdays of the month (1-5); None for every one.
    ordinals: frozenset[int] | None = None
    #: Days of the month 1-31 (`1,15 of month`, or `1st day`); None when weekdays are named.
    monthdays: frozenset[int] | None = None


Schedule = IntervalSchedule | SpecificSchedule


# Parsing ---------------------------------------------------------------------------------------


class _Tokens:
    def __init__(self, text: str) -> None:
        self.text = text
        self.items = [(m.group().lower(), m.start()) for m in _TOKEN_RE.finditer(text)]
        self.index = 0

    def peek(self) -> str | None:
        return self.items[self.index][0] if self.index < len(self.items) else None

    def position(self) -> int:
        if self.index < len(self.items):
            return self.items[self.index][1]
        return len(self.text)

    def take(self) -> str:
        word = self.peek()
        if word is None:
            raise ScheduleError("the schedule ends too early", self.position())
        self.index += 1
        return word

    def error(self, message: str) -> ScheduleError:
        return ScheduleError(message, self.position())

    def expect(self, word: str) -> None:
        if self.peek() != word:
            found = self.peek()
            raise self.error(f"expected {word!r}, {_found(found)}")
        self.index += 1

    def comma_list(self, read: Callable[[_Tokens], int]) -> list[int]:
        values = [read(self)]
        while self.peek() == ",":
            self.index += 1
            values.append(read(self))
        return values


def parse(text: str) -> Schedule:
    """Parse an App Engine schedule; raise `ScheduleError` (with the position) if malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError("the schedule is empty", 0)
    tokens = _Tokens(text)
    first = tokens.peek()
    schedule: Schedule
    if first == "every" and tokens.index + 1 < len(tokens.items) and tokens.items[1][0].isdigit():
        schedule = _interval(tokens)
    else:
        schedule = _specific(tokens)
    if tokens.peek() is not None:
        raise tokens.error(f"unexpected {tokens.peek()!r} after the end of the schedule")
    return schedule


def _interval(tokens: _Tokens) -> IntervalSchedule:
    tokens.expect("every")
    position = tokens.position()
    count = int(tokens.take())
    if count < 1:
        raise ScheduleError("the interval must be at least 1", position)
    unit = tokens.peek()
    if unit not in _UNITS:
        raise tokens.error(f"expected 'minutes' or 'hours', {_found(unit)}")
    tokens.take()
    period = count * _UNITS[unit]
    if period > _DAY:
        raise ScheduleError("the interval must not be longer than 24 hours", position)
    word = tokens.peek()
    if word == "synchronized":
        if _DAY % period:
            raise ScheduleError(
                "a synchronized interval must divide 24 hours evenly "
                "(e.g. 1, 2, 3, 4, 6, 8, 12 or 24 hours)",
                position,
            )
        tokens.take()
        return IntervalSchedule(period, 0, _DAY - 60, synchronized=True)
    if word == "from":
        tokens.take()
        start = _time(tokens)
        tokens.expect("to")
        end = _time(tokens)
        start_seconds = start[0] * 3600 + start[1] * 60
        end_seconds = end[0] * 3600 + end[1] * 60
        return IntervalSchedule(period, start_seconds, end_seconds)
    return IntervalSchedule(period)


def _time(tokens: _Tokens) -> tuple[int, int]:
    position = tokens.position()
    word = tokens.peek()
    match = _TIME_RE.match(word or "")
    if not match:
        raise ScheduleError(f"expected a time HH:MM, {_found(word)}", position)
    tokens.take()
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise ScheduleError(f"{word!r} is not a time of day (00:00 to 23:59)", position)
    return hour, minute


def _read_ordinal(tokens: _Tokens) -> int:
    word = tokens.peek()
    if word not in _ORDINALS:
        raise tokens.error(f"expected an ordinal (1st to 5th, first to fifth), {_found(word)}")
    tokens.take()
    return _ORDINALS[word]


def _weekday_number(word: str | None) -> int | None:
    if word is None or len(word) < 3:
        return None
    for number, name in enumerate(WEEKDAYS):
        if word in (name, name[:3]):
            return number
    return None


def _read_weekday(tokens: _Tokens) -> int:
    number = _weekday_number(tokens.peek())
    if number is None:
        raise tokens.error(f"expected a day of the week, {_found(tokens.peek())}")
    tokens.take()
    return number


def _month_number(word: str | None) -> int | None:
    if word is None or len(word) < 3:
        return None
    for number, name in enumerate(MONTHS, start=1):
        if word in (name, name[:3]):
            return number
    return None


def _read_month(tokens: _Tokens) -> int:
    number = _month_number(tokens.peek())
    if number is None:
        raise tokens.error(f"expected a month, {_found(tokens.peek())}")
    tokens.take()
    return number


def _read_monthday(tokens: _Tokens) -> int:
    word = tokens.peek()
    if word is None or not word.isdigit():
        raise tokens.error(f"expected a day of the month (1 to 31), {_found(word)}")
    if not 1 <= int(word) <= 31:
        raise tokens.error(f"{word!r} is not a day of the month (1 to 31)")
    tokens.take()
    return int(word)


def _specific(tokens: _Tokens) -> SpecificSchedule:
    first = tokens.peek()
    weekdays: frozenset[int] | None = None
    ordinals: frozenset[int] | None = None
    monthdays: frozenset[int] | None = None
    if first is not None and first.isdigit():
        monthdays = frozenset(tokens.comma_list(_read_monthday))
        if tokens.peek() != "of":
            raise tokens.error(
                f"expected 'of' after the days of the month, {_found(tokens.peek())}"
            )
    else:
        if first == "every":
            tokens.take()
        elif first in _ORDINALS:
            ordinals = frozenset(tokens.comma_list(_read_ordinal))
        else:
            raise tokens.error(
                f"expected 'every', an ordinal (1st, second, ...) or a day of the month, "
                f"{_found(first)}"
            )
        if tokens.peek() == "day":
            tokens.take()
            if ordinals is not None:
                monthdays, ordinals = ordinals, None
            else:
                weekdays = frozenset(range(7))
        else:
            weekdays = frozenset(tokens.comma_list(_read_weekday))
    months = frozenset(range(1, 13))
    if tokens.peek() == "of":
        tokens.take()
        months = _months(tokens)
    hour, minute = _time(tokens)
    return SpecificSchedule(hour, minute, months, weekdays, ordinals, monthdays)


def _months(tokens: _Tokens) -> frozenset[int]:
    word = tokens.peek()
    if word == "month":
        tokens.take()
        return frozenset(range(1, 13))
    if word == "quarter":
        tokens.take()
        return frozenset({1, 4, 7, 10})
    if word in _ORDINALS:
        position = tokens.position()
        which = tokens.comma_list(_read_ordinal)
        if any(n > 3 for n in which):
            raise ScheduleError("a quarter has three months", position)
        tokens.expect("month")
        tokens.expect("of")
        tokens.expect("quarter")
        return frozenset(q + n - 1 for q in (1, 4, 7, 10) for n in which)
    return frozenset(tokens.comma_list(_read_month))


# Run times -------------------------------------------------------------------------------------


def _local_times(schedule: Schedule, day: datetime.date) -> list[int]:
    """Return the local times (seconds after midnight) the schedule runs at on `day`."""
    if isinstance(schedule, IntervalSchedule):
        start, end = schedule.start_seconds or 0, schedule.end_seconds or 0
        if end < start:
            end += _DAY  # the range crosses midnight
        times = set()
        for t in range(start, end + 1, schedule.period_seconds):
            times.add(t % _DAY)
        return sorted(times)
    if day.month not in schedule.months:
        return []
    if schedule.monthdays is not None:
        if day.day not in schedule.monthdays:
            return []
    else:
        assert schedule.weekdays is not None
        if day.weekday() not in schedule.weekdays:
            return []
        if schedule.ordinals is not None and (day.day - 1) // 7 + 1 not in schedule.ordinals:
            return []
    return [schedule.hour * 3600 + schedule.minute * 60]


def _instant(day: datetime.date, seconds: int, zone: datetime.tzinfo) -> datetime.datetime:
    # fold=0: a skipped local time is read with the offset before the gap (so it lands after
    # the gap), a repeated one as its first occurrence.
    local = datetime.datetime.combine(day, datetime.time(seconds // 3600, seconds // 60 % 60))
    return local.replace(tzinfo=zone, fold=0).astimezone(datetime.UTC)


def _utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        raise ValueError("run time computations take aware datetimes")
    return moment.astimezone(datetime.UTC)


def next_run_after(
    schedule: Schedule, after: datetime.datetime, zone: datetime.tzinfo | str = "UTC"
) -> datetime.datetime | None:
    """Return the first run strictly after `after` (aware), in UTC; None if it never runs."""
    after = _utc(after)
    if isinstance(schedule, IntervalSchedule) and not schedule.in_local_time:
        seconds = int(after.timestamp()) // schedule.period_seconds * schedule.period_seconds
        return datetime.datetime.fromtimestamp(seconds + schedule.period_seconds, datetime.UTC)
    tz = _zone(zone)
    # A day earlier: a local day's runs may fall on the previous UTC day.
    day = after.astimezone(tz).date() - datetime.timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        runs = sorted({_instant(day, t, tz) for t in _local_times(schedule, day)})
        for run in runs:
            if run > after:
                return run
        day += datetime.timedelta(days=1)
    return None


def previous_run_at_or_before(
    schedule: Schedule, at: datetime.datetime, zone: datetime.tzinfo | str = "UTC"
) -> datetime.datetime | None:
    """Return the last run at or before `at` (aware), in UTC; None if none within the search."""
    at = _utc(at)
    if isinstance(schedule, IntervalSchedule) and not schedule.in_local_time:
        seconds = int(at.timestamp()) // schedule.period_seconds * schedule.period_seconds
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    tz = _zone(zone)
    day = at.astimezone(tz).date() + datetime.timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        runs = sorted({_instant(day, t, tz) for t in _local_times(schedule, day)}, reverse=True)
        for run in runs:
            if run <= at:
                return run
        day -= datetime.timedelta(days=1)
    return None


def next_runs(
    schedule: Schedule,
    after: datetime.datetime,
    zone: datetime.tzinfo | str = "UTC",
    count: int = 5,
) -> list[datetime.datetime]:
    """Return the next `count` runs after `after`, in UTC (fewer if it stops running)."""
    runs: list[datetime.datetime] = []
    moment = after
    while len(runs) < count:
        run = next_run_after(schedule, moment, zone)
        if run is None:
            break
        runs.append(run)
        moment = run
    return runs


def _zone(zone: datetime.tzinfo | str) -> datetime.tzinfo:
    return ZoneInfo(zone) if isinstance(zone, str) else zone


# Words -----------------------------------------------------------------------------------------


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"


def describe(schedule: Schedule) -> str:
    """Return the schedule in plain words, e.g. "at 17:00 on the 1st Monday of September"."""
    if isinstance(schedule, IntervalSchedule):
        period = schedule.period_seconds
        unit = "hour" if period % 3600 == 0 else "minute"
        n = period // (3600 if unit == "hour" else 60)
        every = f"every {unit}" if n == 1 else f"every {n} {unit}s"
        if schedule.synchronized:
            return f"{every}, on the {unit} from 00:00 local time"
        if schedule.start_seconds is not None and schedule.end_seconds is not None:
            return (
                f"{every} from {_clock(schedule.start_seconds)} to {_clock(schedule.end_seconds)}"
            )
        return every
    at = f"at {schedule.hour:02d}:{schedule.minute:02d}"
    if schedule.monthdays is not None:
        days = "on day " + _join([str(d) for d in sorted(schedule.monthdays)])
    else:
        assert schedule.weekdays is not None
        names = [WEEKDAYS[d].capitalize() for d in sorted(schedule.weekdays)]
        if len(names) == 7 and schedule.ordinals is None:
            days = "every day"
        elif schedule.ordinals is None:
            days = "every " + _join(names)
        else:
            which = _join([_ORDINAL_WORDS[n] for n in sorted(schedule.ordinals)])
            days = f"on the {which} {_join(names)}"
    if len(schedule.months) == 12:
        months = "" if schedule.ordinals is None and schedule.monthdays is None else " of the month"
    else:
        months = " of " + _join([MONTHS[m - 1].capitalize() for m in sorted(schedule.months)])
    return f"{at} {days}{months}"
