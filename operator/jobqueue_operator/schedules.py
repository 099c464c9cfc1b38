"""``spec.schedules`` of a ``JobQueue``: the periodic jobs the operator enqueues into its
queue, as the core's ``jobqueue.Schedule``. Pure; the monitor runs them."""

from __future__ import annotations

import collections.abc
import typing

import jobqueue

# spec key: jobqueue.Schedule's keyword
_FIELDS: typing.Final = {
    "name": "name",
    "type": "type",
    "payload": "payload",
    "cron": "cron",
    "everySeconds": "every",
    "timeZone": "timezone",
    "priority": "priority",
    "maxAttempts": "max_attempts",
    "catchUp": "catch_up",
}


class ScheduleSpecError(ValueError):
    """An entry of ``spec.schedules`` is unusable (the CRD's schema should have said so)."""


def from_spec(
    entries: collections.abc.Sequence[collections.abc.Mapping[str, typing.Any]] | None,
    queue: str,
) -> list[jobqueue.Schedule]:
    """The schedules of ``spec["schedules"]`` (camelCase keys), each enqueueing into
    ``queue``; a mistake is a ``ScheduleSpecError`` naming the entry."""
    found: list[jobqueue.Schedule] = []
    names: set[str] = set()
    for index, entry in enumerate(entries or ()):
        where = f"schedules[{index}]"
        if not isinstance(entry, collections.abc.Mapping):
            raise ScheduleSpecError(f"{where} must be an object")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ScheduleSpecError(f"{where}: unknown fields {', '.join(unknown)}")
        given = {_FIELDS[key]: value for key, value in entry.items()}
        try:
            schedule = jobqueue.Schedule(**given, queue=queue)
        except (TypeError, ValueError) as error:
            raise ScheduleSpecError(f"{where} ({entry.get('name', '?')}): {error}") from None
        if schedule.name in names:
            raise ScheduleSpecError(f"{where}: the name {schedule.name!r} is used twice")
        names.add(schedule.name)
        found.append(schedule)
    return found
