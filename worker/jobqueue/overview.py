"""What the people operating queues look at (the web UI, ``jobqueue ui``, shows these):
every queue's jobs by status, its throughput and oldest ready job, whether it is paused, its
live workers and how busy they are; and how many jobs a filter names, before an action on
them is confirmed.

All of it stays cheap on a jobs table of millions of rows: counts come from the statistics'
deltas (``job_counts``), the oldest ready job from a skip scan of the ready index, busy
slots from the running rows' partial index, and a filter's count stops at a limit. None of
them counts the jobs table.

Each function is a method of ``jobqueue.Queue`` (``self``: the queue whose pool it uses).
"""

from __future__ import annotations

import dataclasses
import datetime
import typing

from jobqueue import checks, producer, settings, statements, types

DEFAULT_COUNT_LIMIT: typing.Final = 10_000
# A worker not seen for this long is taken for dead: the stale threshold, after which its
# running jobs are rescued too.
DEFAULT_STALE_AFTER: typing.Final = float(typing.cast(float, settings.STALE_THRESHOLD.default))


@dataclasses.dataclass(frozen=True, slots=True)
class QueueSummary:
    """One queue as the overview shows it. ``counts``: jobs by status, zeros included;
    ``enqueued`` and ``finished``: jobs ever enqueued into it and finished in it (they only
    grow: two readings' difference is the throughput between them); ``oldest_ready_at``:
    when its longest-waiting ready job became due (``None``: nothing ready);
    ``workers``/``slots``: its live workers and how many jobs they may run at once;
    ``measured_at``: the database's time of the reading."""

    name: str
    counts: types.QueueStats
    enqueued: int
    finished: int
    oldest_ready_at: datetime.datetime | None
    paused_at: datetime.datetime | None
    workers: int
    slots: int
    measured_at: datetime.datetime

    @property
    def oldest_ready_age(self) -> float | None:
        """Seconds the oldest ready job has waited since it became due."""
        if self.oldest_ready_at is None:
            return None
        return max(0.0, (self.measured_at - self.oldest_ready_at).total_seconds())

    def to_json(self) -> dict[str, types.JsonValue]:
        out = types.fields_as_json(self, dataclasses.fields(self))
        out["oldest_ready_age"] = self.oldest_ready_age
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSummary:
    """A live worker: its queue, how many jobs it may run at once and how many it runs."""

    worker_id: str
    queue: str
    concurrency: int
    started_at: datetime.datetime
    seen_at: datetime.datetime
    running: int

    def to_json(self) -> dict[str, types.JsonValue]:
        return types.fields_as_json(self, dataclasses.fields(self))


def _reading(
    queue: str | None, stale_after: float | None, now: datetime.datetime | None
) -> dict[str, typing.Any]:
    """The parameters of a reading of one queue (or all) and its live workers."""
    return {
        "queue": None if queue is None else checks.check_name(queue, "queue"),
        "stale_after": DEFAULT_STALE_AFTER
        if stale_after is None
        else checks.check_seconds(stale_after, "stale_after", allow_zero=False),
        "now": checks.check_time(now, "now"),
    }


async def queue_overview(
    self: producer.Producer,
    name: str | None = None,
    *,
    stale_after: float | None = None,
    now: datetime.datetime | None = None,
) -> list[QueueSummary]:
    """Every queue that has had jobs, been paused or has live workers (or just ``name``),
    by name. A worker is live when it was seen within ``stale_after`` seconds (default:
    the stale threshold)."""
    params = _reading(name, stale_after, now)
    statuses = [status.value for status in types.JobStatus]
    return [
        QueueSummary(
            name=row[0],
            counts=dict(zip(statuses, (int(count) for count in row[1:6]), strict=True)),
            enqueued=int(row[6]),
            finished=int(row[7]),
            oldest_ready_at=row[8],
            paused_at=row[9],
            workers=int(row[10]),
            slots=int(row[11]),
            measured_at=row[12],
        )
        for row in await statements.rows(self.pool, "queue_overview", params)
    ]


async def list_workers(
    self: producer.Producer,
    queue: str | None = None,
    *,
    stale_after: float | None = None,
    now: datetime.datetime | None = None,
) -> list[WorkerSummary]:
    """The live workers (of ``queue``, or all), each with the jobs it is running."""
    rows = await statements.rows(self.pool, "worker_list", _reading(queue, stale_after, now))
    return [
        WorkerSummary(
            worker_id=row[0],
            queue=row[1],
            concurrency=row[2],
            started_at=row[3],
            seen_at=row[4],
            running=int(row[5]),
        )
        for row in rows
    ]


async def announce_worker(
    self: producer.Producer,
    worker_id: str,
    *,
    queue: str,
    concurrency: int,
    started_at: datetime.datetime,
    forget_after: float,
    now: datetime.datetime | None = None,
) -> None:
    """Say worker ``worker_id`` is up (a worker calls this every few heartbeats), and
    forget workers not seen for ``forget_after`` seconds."""
    params = {
        "worker_id": checks.check_name(worker_id, "worker id"),
        "queue": checks.check_name(queue, "queue"),
        "concurrency": checks.check_int(concurrency, "concurrency", minimum=1),
        "started_at": checks.check_time(started_at, "started_at"),
        "forget_after": checks.check_seconds(forget_after, "forget_after", allow_zero=False),
        "now": checks.check_time(now, "now"),
    }
    await statements.execute(self.pool, "worker_announce", params)


async def forget_worker(self: producer.Producer, worker_id: str) -> None:
    """Say worker ``worker_id`` has stopped."""
    params = {"worker_id": checks.check_name(worker_id, "worker id")}
    await statements.execute(self.pool, "worker_forget", params)


@dataclasses.dataclass(frozen=True, slots=True)
class JobCount:
    """How many jobs a filter names: ``count`` exactly, or, when ``at_least``, that many
    and perhaps more (counting stopped at the limit)."""

    count: int
    at_least: bool = False

    def __str__(self) -> str:
        return f"{self.count:,}{'+' if self.at_least else ''}"

    def to_json(self) -> dict[str, types.JsonValue]:
        return {"count": self.count, "at_least": self.at_least}


async def count_jobs(
    self: producer.Producer,
    job_filter: types.JobFilter | None = None,
    *,
    limit: int = DEFAULT_COUNT_LIMIT,
) -> JobCount:
    """How many jobs ``job_filter`` names. A filter of only queue, statuses and types is
    counted exactly from the statistics; any other stops counting at ``limit``."""
    params = checks.check_filter(job_filter)
    limit = checks.check_int(limit, "limit", minimum=1, maximum=1_000_000)
    by_statistics = {"queue", "statuses", "types"}
    if all(value is None for key, value in params.items() if key not in by_statistics):
        counted = await self.count_from_statistics(
            params["queue"], params["types"], params["statuses"]
        )
        return JobCount(counted)
    params["limit"] = limit + 1
    (row,) = await statements.rows(self.pool, "job_count_matching", params)
    counted = int(row[0])
    return JobCount(min(counted, limit), at_least=counted > limit)
