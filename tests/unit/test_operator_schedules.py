"""``spec.schedules`` of a JobQueue as the core's schedules (``jobqueue_operator.schedules``)."""

from __future__ import annotations

import typing

import pytest

import jobqueue
from jobqueue_operator import schedules


def test_the_spec_entries_become_schedules_of_the_queue() -> None:
    found = schedules.from_spec(
        [
            {
                "name": "nightly",
                "type": "makeReport",
                "cron": "0 2 * * *",
                "timeZone": "Europe/Berlin",
                "payload": {"kind": "daily"},
                "priority": 5,
                "maxAttempts": 2,
                "catchUp": 1,
            },
            {"name": "pulse", "type": "ping", "everySeconds": 300},
        ],
        "books",
    )
    assert found == [
        jobqueue.Schedule(
            "nightly",
            "makeReport",
            {"kind": "daily"},
            cron="0 2 * * *",
            timezone="Europe/Berlin",
            queue="books",
            priority=5,
            max_attempts=2,
            catch_up=1,
        ),
        jobqueue.Schedule("pulse", "ping", every=300, queue="books"),
    ]
    assert schedules.from_spec(None, "books") == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"name": "a", "type": "t"}], r"schedules\[0\] \(a\): schedule 'a' needs either cron"),
        ([{"name": "a", "type": "t", "cron": "61 * * * *"}], "minute 61 is outside 0-59"),
        ([{"name": "a", "type": "t", "every": 60}], r"schedules\[0\]: unknown fields every"),
        (
            [{"name": "a", "type": "t", "cron": "@daily", "timeZone": "Nowhere/Land"}],
            "unknown time zone 'Nowhere/Land'",
        ),
        (
            [
                {"name": "a", "type": "t", "everySeconds": 60},
                {"name": "a", "type": "u", "everySeconds": 60},
            ],
            r"schedules\[1\]: the name 'a' is used twice",
        ),
        (["a"], r"schedules\[0\] must be an object"),
    ],
)
def test_a_bad_entry_is_named_with_its_reason(entries: list[typing.Any], message: str) -> None:
    with pytest.raises(schedules.ScheduleSpecError, match=message):
        schedules.from_spec(entries, "q")
