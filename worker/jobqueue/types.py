"""The queue's data types: a job as stored, its status, and the errors the queue raises."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import typing
import uuid


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"
    DONE = "done"
    # Terminal, never retried by itself: stopped on request (``cancel_jobs``).
    CANCELLED = "cancelled"


FINISHED_STATUSES: typing.Final = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


JsonValue: typing.TypeAlias = (
    "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"
)


# How deep a payload or result may nest: a worker decodes it on a stack it shares with the
# event loop and the database driver, well within Python's recursion limit of 1000. Deeper
# JSON is refused when stored and undecodable when read, whatever the interpreter's stack
# would allow (which differs between event loops).
MAX_JSON_DEPTH: typing.Final = 200


def nests_too_deep(value: object, text_length: int) -> bool:
    """Whether ``value``, decoded from (or encoded to) JSON text of ``text_length``
    characters, nests deeper than ``MAX_JSON_DEPTH``. Each level takes two characters at
    least, so shorter text cannot, and the walk is skipped for the small payloads most
    jobs have."""
    return text_length > 2 * MAX_JSON_DEPTH and json_depth_exceeds(value, MAX_JSON_DEPTH)


def json_depth_exceeds(value: object, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` deep (without recursing:
    the value may be hostile)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: collections.abc.Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class Undecodable:
    """A stored JSON value Python cannot build (nested too deeply, a number of too many
    digits): what a job's ``payload`` or ``result`` holds instead, so the job fails alone."""

    reason: str
    start: str

    def __str__(self) -> str:
        return f"<undecodable JSON ({self.reason}): {self.start}...>"


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One row of the ``jobs`` table: the seed's columns, then the queue's additions."""

    id: uuid.UUID
    type: str
    status: JobStatus
    payload: typing.Any
    result: typing.Any
    attempts: int
    max_attempts: int
    run_at: datetime.datetime
    locked_at: datetime.datetime | None
    locked_by: str | None
    error: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    queue: str = "default"
    priority: int = 0
    heartbeat_at: datetime.datetime | None = None
    # Set when someone asked to cancel the job while it ran: it ends cancelled.
    cancel_requested_at: datetime.datetime | None = None
    # The job's unique key, and the start of the period it holds it for (None: while it
    # is pending or running); see ``JobOptions``.
    unique_key: str | None = None
    unique_period_start: datetime.datetime | None = None
    # The follow-up jobs its handler enqueued when it was done (None: none).
    follow_ups: list[uuid.UUID] | None = None
    # The key it runs under: its concurrency limit and its turn (``job_limits``).
    concurrency_key: str | None = None

    def to_json(self) -> dict[str, JsonValue]:
        """The job as JSON-ready values (ISO-8601 times, string id)."""
        return fields_as_json(self, dataclasses.fields(Job))  # the row's columns, in a subclass too


def fields_as_json(
    row: object, fields: collections.abc.Iterable[dataclasses.Field[typing.Any]]
) -> dict[str, JsonValue]:
    """The ``fields`` of dataclass ``row`` as JSON-ready values: times in ISO 8601, ids and
    undecodable values as strings."""
    out: dict[str, JsonValue] = {}
    for field in fields:
        value = getattr(row, field.name)
        if isinstance(value, datetime.datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID | Undecodable):
            value = str(value)
        elif isinstance(value, list):
            value = [str(item) if isinstance(item, uuid.UUID) else item for item in value]
        out[field.name] = value
    return out


# The row's columns, in the order ``Job`` takes them as positional arguments.
JOB_FIELDS: typing.Final = tuple(field.name for field in dataclasses.fields(Job))


class JobOptions(typing.TypedDict, total=False):
    """How a new job is to run, for ``enqueue_job`` and ``NewJob`` alike (declared once here):
    ``run_at``, when it is due (timezone-aware; default now); ``max_attempts`` (default 3);
    ``queue`` (default the ``Queue``'s own); ``priority``, higher claimed first (default 0);
    ``unique_key``, a name only one job may hold at a time: while it is pending or running,
    or, with ``unique_for`` seconds, for the period of that length (counted from the Unix
    epoch) in which it was enqueued. Enqueueing a key that is held adds nothing and returns
    the job that holds it, as a ``DuplicateJob``. ``concurrency_key``, what the job runs on
    behalf of (a tenant, an API account): the queue's limits per key cap how many of its jobs
    run at once, and keys take turns (``Queue.limit_concurrency``)."""

    run_at: datetime.datetime | None
    max_attempts: int | None
    queue: str | None
    priority: int
    unique_key: str | None
    unique_for: float | None
    concurrency_key: str | None


class LimitScope(enum.StrEnum):
    """What a concurrency limit counts: the queue's running jobs, one job type's, or each
    concurrency key's."""

    QUEUE = "queue"
    TYPE = "type"
    KEY = "key"


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """The limits of one scope of ``queue``, across every worker: at most ``concurrency``
    jobs running at once, and at most ``rate`` starts per ``per`` seconds with bursts of up
    to ``burst`` (default ``rate``). Of the whole queue (scope ``queue``, ``name`` empty),
    of job type ``name`` (``type``), or of concurrency key ``name`` (``key``; ``name``
    empty: every key's default, which a key's own row keeps for what it leaves ``None``).
    ``None``: no such limit (for ``key``, the queue still takes turns between keys)."""

    queue: str
    scope: LimitScope
    name: str
    concurrency: int | None
    updated_at: datetime.datetime
    rate: int | None = None
    per: float = 1.0
    burst: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DuplicateJob(Job):
    """What an enqueue with a ``unique_key`` returns when another job holds the key: that
    job, as it is now. Nothing was added (``isinstance(job, DuplicateJob)`` says so)."""


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class NewJob:
    """A job to enqueue, for ``enqueue_jobs`` and follow-ups: the arguments of
    ``enqueue_job``, kept for later (``NewJob("embedBook", {"bookId": 1}, priority=5)``)."""

    type: str
    payload: typing.Any
    options: JobOptions

    def __init__(
        self, type: str, payload: typing.Any = None, **options: typing.Unpack[JobOptions]
    ) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "options", options)


@dataclasses.dataclass(frozen=True, slots=True)
class RescuedJob:
    """A job taken back from a worker that stopped responding: what it is now (``pending``
    to run again, or ``failed`` when out of attempts), and who held it until when."""

    id: uuid.UUID
    type: str
    queue: str
    status: JobStatus
    attempts: int
    worker_id: str | None
    last_seen: datetime.datetime


QueueStats: typing.TypeAlias = dict[str, int]
"""``{"pending": n, "running": n, "failed": n, "done": n, "cancelled": n}``: every status,
zeros included (the seed's four keys, and the one job control added)."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs to list, cancel, retry or delete; every field left ``None`` is no
    condition, so ``JobFilter()`` names every job. ``created_after`` is inclusive,
    ``created_before`` exclusive; ``error_contains`` matches the error text without regard
    to case; ``payload_contains`` is JSON the payload contains (``{"bookId": 7}``, as
    PostgreSQL's ``@>``)."""

    ids: collections.abc.Collection[uuid.UUID | str] | None = None
    statuses: collections.abc.Collection[JobStatus | str] | None = None
    types: collections.abc.Collection[str] | None = None
    queue: str | None = None
    created_after: datetime.datetime | None = None
    created_before: datetime.datetime | None = None
    error_contains: str | None = None
    payload_contains: typing.Any = None


class JobQueueError(Exception):
    """Base of the errors the queue raises about jobs (not about arguments)."""


class JobNotFoundError(JobQueueError, LookupError):
    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class JobStateError(JobQueueError):
    """The job exists but is not in a state that allows the operation."""

    def __init__(self, job: Job, operation: str, detail: str = "") -> None:
        message = f"cannot {operation} job {job.id}: it is {job.status}"
        super().__init__(message + (f" ({detail})" if detail else ""))
        self.job = job
        self.operation = operation
