"""When a periodic schedule ticks: cron expressions read on a time zone's wall clock, and
fixed intervals. Pure (no I/O); the scheduler (``schedules``) asks two questions of a
timetable: the first tick after an instant, and the last tick at or before one.

Cron has the usual five fields (minute, hour, day of month, month, day of week), each a
``*``, a number, a range ``a-b`` or a list of these, any of them with a step ``/n``; months
and weekdays may be named (``jan``, ``mon``), Sunday is 0 or 7, and ``@hourly``,
``@daily`` (``@midnight``), ``@weekly``, ``@monthly`` and ``@yearly`` (``@annually``)
stand for their expressions. When both day fields are restricted (neither starts with
``*``), a day matching either one matches, as in Vixie cron.

A tick is an instant. Times are matched on the wall clock of the schedule's time zone: a
wall time that a daylight-saving change skips ticks at the instant the clocks jump to
(02:30 on the spring day in Berlin ticks at 03:00 local time plus the 30 minutes, the same
instant the offset before the change gives); a wall time that repeats ticks once, the first
time. Intervals ignore time zones: they tick every ``n`` seconds counted from the Unix
epoch, so ``every=3600`` ticks on each UTC hour, on every machine alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
import zoneinfo

UTC: typing.Final = datetime.UTC
EPOCH: typing.Final = datetime.datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE: typing.Final = datetime.timedelta(minutes=1)
_DAY: typing.Final = datetime.timedelta(days=1)
# How far the search for a matching minute looks before it calls an expression one that
# never fires (``0 0 30 2 *``): past the longest gap a real expression has, 29 February
# on a chosen weekday (28 years), and the 2100 leap year skip.
_SEARCH_YEARS: typing.Final = 30

_MONTHS: typing.Final = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
)  # fmt: skip
_WEEKDAYS: typing.Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS: typing.Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A cron expression, interval or time zone that cannot be a timetable."""


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number of names[0]


_FIELDS: typing.Final = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    # 7 is Sunday too; folded to 0 once parsed.
    _Field("day of week", 0, 7, _WEEKDAYS, 0),
)


def _number(text: str, field: _Field, expression: str) -> int:
    lowered = text.lower()
    if lowered in field.names:
        return field.names.index(lowered) + field.name_base
    if not text.isdigit():
        raise CronError(f"cron {expression!r}: {field.name} {text!r} is not a number")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(
            f"cron {expression!r}: {field.name} {value} is outside {field.low}-{field.high}"
        )
    return value


def _parse_field(text: str, field: _Field, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        spread, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"cron {expression!r}: step {step_text!r} is not a positive number")
            step = int(step_text)
        if spread == "*":
            low, high = field.low, field.high
        elif "-" in spread:
            first, _, last = spread.partition("-")
            low, high = _number(first, field, expression), _number(last, field, expression)
            if low > high:
                raise CronError(f"cron {expression!r}: range {spread!r} runs backwards")
        else:
            low = _number(spread, field, expression)
            # "5/15" is 5, 20, 35, 50: from the number to the field's end.
            high = field.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed cron expression; ``Cron.parse("*/5 * * * *")``."""

    expression: str
    minutes: tuple[int, ...]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    # Whether both day fields are restricted: then either one matching is enough.
    either_day: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        if not isinstance(expression, str):
            raise TypeError(f"cron must be a string, not {type(expression).__name__}")
        text = _MACROS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) != len(_FIELDS):
            raise CronError(
                f"cron {expression!r} has {len(parts)} fields; it needs 5 (minute, hour,"
                f" day of month, month, day of week) or one of {', '.join(_MACROS)}"
            )
        minutes, hours, days, months, weekdays = (
            _parse_field(part, field, expression)
            for part, field in zip(parts, _FIELDS, strict=True)
        )
        cron = cls(
            expression=expression,
            minutes=tuple(sorted(minutes)),
            hours=hours,
            days=days,
            months=months,
            weekdays=frozenset(day % 7 for day in weekdays),
            either_day=not parts[2].startswith("*") and not parts[4].startswith("*"),
        )
        if cron.next_match(datetime.datetime(2000, 1, 1)) is None:
            raise CronError(f"cron {expression!r} never fires (no such day)")
        return cron

    def _day_matches(self, day: datetime.datetime) -> bool:
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        return in_month or in_week if self.either_day else in_month and in_week

    def next_match(self, start: datetime.datetime) -> datetime.datetime | None:
        """The first wall-clock minute at or after ``start`` (naive, whole minutes) that
        the expression names; ``None`` if there is none within ``_SEARCH_YEARS``."""
        moment = start.replace(second=0, microsecond=0)
        end_year = moment.year + _SEARCH_YEARS
        while moment.year <= end_year:
            if moment.month not in self.months:
                year, month = divmod(moment.year * 12 + moment.month, 12)  # the next month
                if year > datetime.MAXYEAR:
                    return None
                moment = datetime.datetime(year, month + 1, 1)
            elif not self._day_matches(moment):
                moment = _midnight(moment) + _DAY
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) + datetime.timedelta(hours=1)
            else:
                later = [minute for minute in self.minutes if minute >= moment.minute]
                if later:
                    return moment.replace(minute=later[0])
                moment = moment.replace(minute=0) + datetime.timedelta(hours=1)
        return None

    def previous_match(self, start: datetime.datetime) -> datetime.datetime | None:
        """The last wall-clock minute at or before ``start`` that the expression names."""
        moment = start.replace(second=0, microsecond=0)
        end_year = moment.year - _SEARCH_YEARS
        while moment.year >= end_year:
            if moment.month not in self.months:
                moment = moment.replace(day=1, hour=0, minute=0) - _MINUTE
            elif not self._day_matches(moment):
                moment = _midnight(moment) - _MINUTE
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) - _MINUTE
            else:
                earlier = [minute for minute in self.minutes if minute <= moment.minute]
                if earlier:
                    return moment.replace(minute=earlier[-1])
                moment = moment.replace(minute=0) - _MINUTE
        return None


def _midnight(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(hour=0, minute=0)


class Timetable(typing.Protocol):
    def next_after(self, instant: datetime.datetime) -> datetime.datetime:
        """The first tick strictly after ``instant`` (aware), in UTC."""
        ...

    def latest_at(self, instant: datetime.datetime) -> datetime.datetime | None:
        """The last tick at or before ``instant`` (aware), in UTC."""
        ...


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``)."""
    if not isinstance(name, str):
        raise TypeError(f"time zone must be a string, not {type(name).__name__}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r} (an IANA name like 'Europe/Berlin')") from None


@dataclasses.dataclass(frozen=True)
class CronTimetable:
    """A cron expression on the wall clock of ``zone`` (see the module docstring)."""

    cron: Cron
    zone: zoneinfo.ZoneInfo

    def _instant(self, wall: datetime.datetime) -> datetime.datetime:
        # fold=0: a repeated wall time is its first instant, a skipped one the instant the
        # offset before the change gives.
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def _offsets(self, instant: datetime.datetime) -> list[datetime.timedelta]:
        """The zone's UTC offsets within a day of ``instant``: a wall time near it is the
        instant plus one of them."""
        return [
            typing.cast(datetime.timedelta, self.zone.utcoffset(moment))
            for moment in (instant - _DAY, instant, instant + _DAY)
        ]

    def next_after(self, instant: datetime.datetime) -> datetime.datetime:
        # A tick after ``instant`` is a wall time after the instant read with the smallest
        # offset near it; skipped wall times map a little later, so look from there on.
        wall = (instant + min(self._offsets(instant))).replace(tzinfo=None)
        while True:
            match = self.cron.next_match(wall)
            if match is None:
                raise CronError(f"cron {self.cron.expression!r} fires no more")
            tick = self._instant(match)
            if tick > instant:
                return tick
            wall = match + _MINUTE

    def latest_at(self, instant: datetime.datetime) -> datetime.datetime | None:
        wall = (instant + max(self._offsets(instant))).replace(tzinfo=None)
        while True:
            match = self.cron.previous_match(wall)
            if match is None:
                return None
            tick = self._instant(match)
            if tick <= instant:
                return tick
            wall = match - _MINUTE


@dataclasses.dataclass(frozen=True)
class IntervalTimetable:
    """A tick every ``seconds``, counted from the Unix epoch."""

    seconds: float

    @property
    def _step(self) -> int:
        return round(self.seconds * 1_000_000)  # microseconds: exact arithmetic

    def _tick(self, index: int) -> datetime.datetime:
        return EPOCH + datetime.timedelta(microseconds=index * self._step)

    def _index(self, instant: datetime.datetime) -> int:
        return ((instant - EPOCH) // datetime.timedelta(microseconds=1)) // self._step

    def next_after(self, instant: datetime.datetime) -> datetime.datetime:
        return self._tick(self._index(instant) + 1)

    def latest_at(self, instant: datetime.datetime) -> datetime.datetime | None:
        return self._tick(self._index(instant))
