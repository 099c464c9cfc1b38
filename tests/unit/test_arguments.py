"""Argument checks and parsing that need no database."""

from __future__ import annotations

import argparse
import datetime
import uuid

import pytest

from jobqueue import checks, cli, types


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300", 300),
        ("300000ms", 300),
        ("30s", 30),
        ("5m", 300),
        ("1.5h", 5400),
        ("1d", 86_400),
        (" 2 m ", 120),
        ("0.25", 0.25),
        ("250ms", 0.25),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-5m", "0s", "m", "1e3"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        cli.parse_duration(text)


def test_parse_aware_datetime() -> None:
    assert cli.parse_aware_datetime("2030-01-01T00:00:00Z") == datetime.datetime(
        2030, 1, 1, tzinfo=datetime.UTC
    )
    with pytest.raises(argparse.ArgumentTypeError, match="no timezone"):
        cli.parse_aware_datetime("2030-01-01T00:00:00")
    with pytest.raises(argparse.ArgumentTypeError, match="invalid time"):
        cli.parse_aware_datetime("tomorrow")


def test_job_id_accepts_uuid_and_string() -> None:
    value = uuid.uuid4()
    assert checks.check_job_id(value) is value
    assert checks.check_job_id(str(value)) == value
    with pytest.raises(TypeError, match="job id must be a UUID or a string"):
        checks.check_job_id(12)


def test_json_text_keeps_unicode_and_null() -> None:
    assert checks.to_json_text(None, "payload") is None
    assert checks.to_json_text({"t": "书"}, "payload") == '{"t": "书"}'


def test_seconds_checks() -> None:
    assert checks.check_seconds(0, "retry_delay") == 0.0
    with pytest.raises(ValueError, match="retry_delay must be a non-negative finite number"):
        checks.check_seconds(float("inf"), "retry_delay")
    with pytest.raises(TypeError, match="must be a number"):
        checks.check_seconds("5", "retry_delay")


def test_job_to_json() -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    job = types.Job(
        id=uuid.UUID(int=1),
        type="t",
        status=types.JobStatus.DONE,
        payload={"a": [1]},
        result=None,
        attempts=1,
        max_attempts=3,
        run_at=now,
        locked_at=None,
        locked_by=None,
        error=None,
        created_at=now,
        updated_at=now,
    )
    out = job.to_json()
    assert out["id"] == "00000000-0000-0000-0000-000000000001"
    assert out["status"] == "done"
    assert out["run_at"] == "2030-01-01T00:00:00+00:00"
    assert out["payload"] == {"a": [1]}


def test_stats_table_lines_up() -> None:
    total = {"pending": 1, "running": 2, "failed": 3, "done": 4, "cancelled": 5}
    lines = cli._stats_table(total, {"parseBook": total}).splitlines()
    assert [line.split()[0] for line in lines] == ["TYPE", "parseBook", "TOTAL"]
    assert len({len(line) for line in lines}) == 1


def test_new_job_options_are_checked() -> None:
    checked = checks.check_new_job(types.NewJob("t", {"n": 1}, priority=2, queue="q"))
    assert (checked["priority"], checked["queue"], checked["run_at"]) == (2, "q", None)
    with pytest.raises(TypeError, match="unexpected job option 'priorty'"):
        checks.check_new_job(types.NewJob("t", priorty=2))  # type: ignore[call-arg]
