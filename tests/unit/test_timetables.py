"""Timetables (``jobqueue.timetables``): cron expressions on a zone's wall clock, and
intervals; checked against ticks worked out by hand and against a brute-force walk over
every minute."""

from __future__ import annotations

import datetime
import random
import zoneinfo

import pytest

import jobqueue
from jobqueue import timetables

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


def table(expression: str, zone: str = "UTC") -> timetables.CronTimetable:
    return timetables.CronTimetable(timetables.Cron.parse(expression), timetables.time_zone(zone))


def ticks_after(timetable: timetables.Timetable, start: datetime.datetime, count: int) -> list[str]:
    found = []
    for _ in range(count):
        start = timetable.next_after(start)
        found.append(start.isoformat())
    return found


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("*/15 * * * *", utc(2026, 1, 1, 10, 7), ["10:15", "10:30", "10:45", "11:00"]),
        ("5/20 9-10 * * *", utc(2026, 1, 1, 9, 30), ["09:45", "10:05", "10:25", "10:45"]),
        ("0 8,12 * * mon-fri", utc(2026, 1, 2, 9), ["01-02 12:00", "01-05 08:00", "01-05 12:00"]),
        ("@hourly", utc(2026, 1, 1, 10, 0), ["11:00", "12:00"]),
        ("@daily", utc(2026, 1, 1, 10), ["01-02 00:00", "01-03 00:00"]),
        ("0 0 1 jan,JUL *", utc(2026, 2, 1), ["2026-07-01 00:00", "2027-01-01 00:00"]),
        # Both day fields restricted: either matches (the 13th, and every Friday).
        ("0 0 13 * 5", utc(2026, 2, 1), ["02-06", "02-13", "02-20", "02-27", "03-06", "03-13"]),
        # Day of month restricted only: Sunday (0 or 7) plays no part.
        ("0 0 29 2 *", utc(2026, 1, 1), ["2028-02-29 00:00", "2032-02-29 00:00"]),
        ("0 12 * * 7", utc(2026, 1, 1), ["01-04 12:00", "01-11 12:00"]),
    ],
)
def test_cron_ticks_are_the_ones_written(
    expression: str, start: datetime.datetime, expected: list[str]
) -> None:
    got = ticks_after(table(expression), start, len(expected))
    for tick, want in zip(got, expected, strict=True):
        stamp = tick.replace("T", " ")
        assert want in stamp or want.replace(" 00:00", "") in stamp, (got, expected)


def test_a_tick_is_strictly_after_and_latest_is_at_or_before() -> None:
    every_five = table("*/5 * * * *")
    assert every_five.next_after(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 10)
    assert every_five.latest_at(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 5)
    assert every_five.latest_at(utc(2026, 1, 1, 10, 9, 59)) == utc(2026, 1, 1, 10, 5)
    interval = timetables.IntervalTimetable(90)
    assert interval.next_after(utc(1970, 1, 1, 0, 1, 30)) == utc(1970, 1, 1, 0, 3)
    assert interval.latest_at(utc(1970, 1, 1, 0, 2, 59)) == utc(1970, 1, 1, 0, 1, 30)


def matches(cron: timetables.Cron, wall: datetime.datetime) -> bool:
    """Whether the expression names this wall-clock minute, field by field."""
    in_month, in_week = wall.day in cron.days, wall.isoweekday() % 7 in cron.weekdays
    day = in_month or in_week if cron.either_day else in_month and in_week
    fields = (wall.minute in cron.minutes, wall.hour in cron.hours, wall.month in cron.months)
    return day and all(fields)


# The daylight-saving changes of 2026 in the zones below (New York, Berlin, Lord Howe's
# half-hour shift), each the middle of a four-day window.
CHANGES = [utc(2026, 3, 8), utc(2026, 3, 29), utc(2026, 4, 5), utc(2026, 10, 4), utc(2026, 10, 25)]


@pytest.mark.parametrize(
    "expression",
    ["*/7 3-5 * * *", "0 0 13 * 5", "15 2 * * *", "30 1 * * sun,wed", "0 */2 1-3,9-12,20-31 * *"],
)
@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
)
def test_next_and_latest_agree_with_a_walk_over_every_minute(expression: str, zone: str) -> None:
    """Around every daylight-saving change, the ticks are exactly the instants of the
    matching wall times (a repeated one once, the first time), found by brute force."""
    timetable = table(expression, zone)
    tz = zoneinfo.ZoneInfo(zone)
    cron = timetable.cron
    rng = random.Random(expression + zone)
    for change in [*CHANGES, utc(2026, 11, 1)]:
        start, end = change - datetime.timedelta(days=2), change + datetime.timedelta(days=2)
        expected: set[datetime.datetime] = set()
        # From 10 days before: every expression here ticks at least that often.
        wall = (start - datetime.timedelta(days=10)).astimezone(tz).replace(tzinfo=None)
        wall = wall.replace(second=0, microsecond=0)
        while wall < (end + datetime.timedelta(days=1)).replace(tzinfo=None):
            if matches(cron, wall):
                expected.add(wall.replace(tzinfo=tz, fold=0).astimezone(UTC))
            wall += datetime.timedelta(minutes=1)
        ordered = sorted(tick for tick in expected if start <= tick < end)
        walked = []
        tick = timetable.next_after(start - datetime.timedelta(microseconds=1))
        while tick < end:
            walked.append(tick)
            tick = timetable.next_after(tick)
        assert walked == ordered
        for _ in range(20):  # latest_at from random instants: the last expected tick before
            instant = start + datetime.timedelta(seconds=rng.uniform(0, 4 * 86_400))
            before = [tick for tick in sorted(expected) if tick <= instant]
            assert timetable.latest_at(instant) == before[-1]


def test_daylight_saving_in_berlin() -> None:
    daily = table("30 2 * * *", "Europe/Berlin")
    # 29 March 2026: 02:30 does not exist; it ticks at 03:30 CEST (01:30 UTC), once.
    assert daily.next_after(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 30)
    assert daily.next_after(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 30, 0, 30)
    # A new schedule looked at just after the clocks jumped still gets that day's tick.
    assert daily.next_after(utc(2026, 3, 29, 1, 10)) == utc(2026, 3, 29, 1, 30)
    # 25 October 2026: 02:30 happens twice; it ticks the first time (CEST) only.
    assert daily.next_after(utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)
    assert daily.next_after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("60 * * * *", "minute 60 is outside 0-59"),
        ("* 24 * * *", "hour 24 is outside 0-23"),
        ("* * 0 * *", "day of month 0 is outside 1-31"),
        ("* * * 13 *", "month 13 is outside 1-12"),
        ("* * * * 8", "day of week 8 is outside 0-7"),
        ("*/0 * * * *", "step '0' is not a positive number"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("x * * * *", "minute 'x' is not a number"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
        ("@often", "one of @yearly"),
    ],
)
def test_a_bad_cron_expression_is_refused_with_its_reason(expression: str, message: str) -> None:
    with pytest.raises(timetables.CronError, match=message):
        timetables.Cron.parse(expression)


def test_a_schedule_checks_what_it_is_given() -> None:
    with pytest.raises(ValueError, match="either cron or every"):
        jobqueue.Schedule("s", "t")
    with pytest.raises(ValueError, match="either cron or every"):
        jobqueue.Schedule("s", "t", cron="* * * * *", every=60)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        jobqueue.Schedule("s", "t", cron="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="at most each second"):
        jobqueue.Schedule("s", "t", every=0.5)
    with pytest.raises(ValueError, match="catch_up must be between 0 and 1000"):
        jobqueue.Schedule("s", "t", every=60, catch_up=-1)
    with pytest.raises(ValueError, match="limit is 150"):
        jobqueue.Schedule("s" * 151, "t", every=60)
    with pytest.raises(TypeError, match="payload"):
        jobqueue.Schedule("s", "t", every=60, payload={"f": object()})
    schedule = jobqueue.Schedule("s", "t", cron="0 2 * * *", timezone="Europe/Berlin")
    assert schedule.timing == "0 2 * * * (Europe/Berlin)"
    assert jobqueue.Schedule("s", "t", every=300).timing == "every 300s"


def test_missed_ticks_keep_the_newest_and_catch_up_at_most_n() -> None:
    start, now = utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 47)
    skip = jobqueue.Schedule("s", "t", cron="*/10 * * * *")
    assert skip.due_ticks(start, now) == ([utc(2026, 1, 1, 10, 40)], True)
    two = jobqueue.Schedule("s", "t", cron="*/10 * * * *", catch_up=2)
    assert two.due_ticks(start, now) == (
        [utc(2026, 1, 1, 10, 20), utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10, 40)],
        True,
    )
    every = jobqueue.Schedule("s", "t", cron="*/10 * * * *", catch_up=100)
    ticks, left_out = every.due_ticks(start, now)
    assert len(ticks) == 5
    assert ticks[0] == start
    assert not left_out
    # Ahead of time: every tick to the horizon, none of them missed.
    ahead = skip.due_ticks(utc(2026, 1, 1, 10, 40), now, utc(2026, 1, 1, 11, 5))
    assert ahead == ([utc(2026, 1, 1, 10, 40, 0), *(utc(2026, 1, 1, h, m) for h, m in
                      ((10, 50), (11, 0)))], False)  # fmt: skip
    # On time: the one tick due, nothing missed.
    assert skip.due_ticks(utc(2026, 1, 1, 10, 40), now) == ([utc(2026, 1, 1, 10, 40)], False)
