"""Argument checks, run before any SQL: a caller's mistake is a ``ValueError``/``TypeError``
naming the problem rather than a database error. Every time or delay the queue computes
passes ``check_time``/``check_seconds`` too, so what is written can be read back.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import typing
import uuid

from jobqueue import settings, types

DEFAULT_QUEUE: typing.Final = "default"
DEFAULT_RETRY_DELAY_SECONDS: typing.Final = float(typing.cast(float, settings.RETRY_DELAY.default))
MAX_NAME_LENGTH: typing.Final = 200
INT32_MAX: typing.Final = 2**31 - 1
DEFAULT_MAX_ATTEMPTS: typing.Final = 3  # the jobs table's default (migration 0001)

_CONTROL_CHARACTERS: typing.Final = re.compile(r"[\x00-\x1f\x7f]")
# One encoder for every payload and result: json.dumps with options builds a new one a call.
_JSON: typing.Final = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
# The times the queue stores are kept a day inside what Python can represent in any
# timezone, so that whatever is written can be read back.
EARLIEST_TIME: typing.Final = datetime.datetime(1, 1, 2, tzinfo=datetime.UTC)
LATEST_TIME: typing.Final = datetime.datetime(9999, 12, 30, tzinfo=datetime.UTC)
# The longest delay, threshold or retention anyone sets on purpose: ten years, in seconds.
MAX_SECONDS: typing.Final = 10 * 366 * 86_400.0


def check_name(value: object, what: str) -> str:
    """A job type, queue or worker name: a non-empty string of at most 200 characters,
    with no control characters (a newline in a name would forge log lines)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}")
    bad = _CONTROL_CHARACTERS.search(value)
    if bad:
        raise ValueError(
            f"{what} {value[:40]!r} contains the control character {bad.group()!r};"
            " names are printable text"
        )
    return value


def to_json_text(value: object, what: str) -> str | None:
    """``value`` as JSON text for a jsonb column; ``None`` stays SQL NULL. Refuses what a
    worker could not decode again."""
    if value is None:
        return None
    try:
        text = _JSON.encode(value)
    except TypeError as error:
        raise TypeError(f"{what} is not JSON-serialisable: {error}") from None
    except ValueError as error:  # NaN or infinity, which JSON cannot carry; huge integers
        if "Circular reference" in str(error):
            raise ValueError(f"{what} contains itself (a circular reference)") from None
        raise ValueError(f"{what} is not valid JSON: {error}") from None
    except RecursionError:  # nested past the interpreter's limit, or containing itself
        if types.json_depth_exceeds(value, types.MAX_JSON_DEPTH):
            raise ValueError(f"{what} nests more than {types.MAX_JSON_DEPTH} levels deep") from None
        raise ValueError(f"{what} contains itself (a circular reference)") from None
    if types.nests_too_deep(value, len(text)):
        raise ValueError(f"{what} nests more than {types.MAX_JSON_DEPTH} levels deep")
    if "\\u0000" in text:
        raise ValueError(f"{what} contains a NUL character, which PostgreSQL jsonb cannot store")
    return text


def check_time(value: object, what: str) -> datetime.datetime | None:
    """A timezone-aware time the database and Python can both hold (years 1 to 9999)."""
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} must be timezone-aware (a naive datetime is ambiguous);"
            " use e.g. datetime.now(timezone.utc)"
        )
    try:
        in_range = EARLIEST_TIME <= value <= LATEST_TIME
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValueError(
            f"{what} {value.isoformat()} is out of range: it must lie between"
            f" {EARLIEST_TIME.date()} and {LATEST_TIME.date()} (UTC)"
        )
    return value


def check_run_at(value: object) -> datetime.datetime | None:
    return check_time(value, "run_at")


def check_int(value: object, what: str, *, minimum: int, maximum: int = INT32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value


def check_job_id(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise TypeError(f"job id must be a UUID or a string, not {type(value).__name__}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"malformed job id {value!r}: expected a UUID") from None


def check_seconds(
    value: object,
    what: str,
    *,
    allow_zero: bool = True,
    maximum: float = MAX_SECONDS,
    unit: str = "seconds",
) -> float:
    """A duration (in seconds unless ``unit`` says otherwise): finite, not negative (or
    positive), at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(
            f"{what} must be a {'non-negative' if allow_zero else 'positive'}"
            f" finite number, got {value}"
        )
    if seconds > maximum:
        raise ValueError(f"{what} is {value} {unit}; the limit is {maximum:.0f} {unit} (ten years)")
    return seconds


def check_new_job(job: types.NewJob) -> dict[str, typing.Any]:
    """A new job's columns, checked; options not given are ``None`` (the database's or the
    queue's default), except ``priority`` (0)."""
    return check_job_arguments(job.type, job.payload, job.options)


def check_job_arguments(
    type: object, payload: object, options: types.JobOptions
) -> dict[str, typing.Any]:
    """``check_new_job`` of ``enqueue_job``'s arguments, with no ``NewJob`` made for them."""
    if options:
        unknown = sorted(options.keys() - types.JobOptions.__optional_keys__)
        if unknown:  # **options takes any keyword at run time: a typo must not pass unnoticed
            raise TypeError(f"unexpected job option {unknown[0]!r}")
    max_attempts = options.get("max_attempts")
    queue = options.get("queue")
    unique_key = options.get("unique_key")
    unique_for = options.get("unique_for")
    if unique_for is not None and unique_key is None:
        raise ValueError("unique_for needs a unique_key")
    concurrency_key = options.get("concurrency_key")
    return {
        "type": check_name(type, "job type"),
        "payload": to_json_text(payload, "payload"),
        "run_at": check_run_at(options.get("run_at")),
        "max_attempts": None
        if max_attempts is None
        else check_int(max_attempts, "max_attempts", minimum=1),
        "queue": None if queue is None else check_name(queue, "queue"),
        "priority": check_int(options.get("priority", 0), "priority", minimum=-INT32_MAX),
        "unique_key": None if unique_key is None else check_name(unique_key, "unique_key"),
        "unique_for": None
        if unique_for is None
        else check_seconds(unique_for, "unique_for", allow_zero=False),
        "concurrency_key": None
        if concurrency_key is None
        else check_name(concurrency_key, "concurrency_key"),
    }


_MAX_FILTER_IDS: typing.Final = 100_000


def check_text(value: object, what: str) -> str:
    """Free text for a text column or a search (a reason, an error to look for): a
    non-empty string without NUL, which a text column cannot hold."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    if not value or "\x00" in value:
        raise ValueError(f"{what} must be non-empty text without NUL")
    return value


def check_filter(job_filter: types.JobFilter | None) -> dict[str, typing.Any]:
    """A ``JobFilter`` as the parameters of ``jobs_matching`` (migration 0004): each field
    checked, ``None`` for no condition. A filter is given on purpose: an empty list of ids,
    statuses or types is an error, not "everything"."""
    if job_filter is None:
        job_filter = types.JobFilter()
    if not isinstance(job_filter, types.JobFilter):
        raise TypeError(f"filter must be a JobFilter, not {type(job_filter).__name__}")

    def listed(values: typing.Any, what: str) -> list[typing.Any] | None:
        if values is None:
            return None
        if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
            raise TypeError(f"{what} must be a list, not {type(values).__name__}")
        items = list(values)
        if not items:
            raise ValueError(f"{what} is empty: leave it out (None) to mean any")
        if len(items) > _MAX_FILTER_IDS:
            raise ValueError(f"{what} has {len(items)} entries; the limit is {_MAX_FILTER_IDS}")
        return items

    ids = listed(job_filter.ids, "ids")
    statuses = listed(job_filter.statuses, "statuses")
    if statuses is not None:
        known = {status.value for status in types.JobStatus}
        unknown = sorted({str(status) for status in statuses} - known)
        if unknown:
            raise ValueError(f"unknown status {unknown[0]!r}: one of {', '.join(sorted(known))}")
    job_types = listed(job_filter.types, "types")
    error_contains = job_filter.error_contains
    if error_contains is not None:
        check_text(error_contains, "error_contains")
    payload_contains = job_filter.payload_contains
    return {
        "ids": None if ids is None else [check_job_id(job_id) for job_id in ids],
        "statuses": None if statuses is None else sorted({str(status) for status in statuses}),
        "types": None if job_types is None else [check_name(t, "job type") for t in job_types],
        "queue": None if job_filter.queue is None else check_name(job_filter.queue, "queue"),
        "created_after": check_time(job_filter.created_after, "created_after"),
        "created_before": check_time(job_filter.created_before, "created_before"),
        "error_contains": error_contains,
        "payload_contains": None
        if payload_contains is None
        else to_json_text(payload_contains, "payload_contains"),
    }
