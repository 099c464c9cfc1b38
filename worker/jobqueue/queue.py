"""Queue operations: enqueue, status, stats, claim, complete, fail, stale-lock cleanup.

``Queue`` holds a connection pool and runs the named queries of ``sql/queries.sql``; every
operation is one statement, so it is atomic without an explicit transaction. The
module-level functions (``enqueue_job`` and friends, as in the seed) use a default ``Queue``
configured from ``DATABASE_URL``, one per event loop.

Arguments are checked here, before any SQL runs, so that a caller's mistake is a
``ValueError``/``TypeError`` naming the problem rather than a database error.
"""

from __future__ import annotations

import asyncio
import collections.abc
import datetime
import functools
import json
import logging
import math
import re
import typing
import uuid
import weakref
import zlib

import psycopg
import psycopg_pool

from jobqueue import db, settings, sql, types

logger = logging.getLogger("jobqueue.queue")

DEFAULT_QUEUE: typing.Final = "default"
DEFAULT_MAX_ATTEMPTS: typing.Final = 3
DEFAULT_RETRY_DELAY_SECONDS: typing.Final = float(typing.cast(float, settings.RETRY_DELAY.default))
_PRODUCER_POOL_SIZE: typing.Final = 10
MAX_NAME_LENGTH: typing.Final = 200
_INT32_MAX: typing.Final = 2**31 - 1
# How many appended count deltas a stats read tolerates before it folds them together.
_COUNTS_COMPACT_AFTER: typing.Final = 500
_COUNTS_LOCK_KEY: typing.Final = 0x6A6F6271_636E7473  # "jobqcnts"
_RESCUE_LOCK_KEY: typing.Final = 0x6A6F6271_72736375  # "jobqrscu", plus the queue's CRC32
# A reader that may not write (a SELECT-only role, a hot standby) skips the compaction.
_CANNOT_WRITE: typing.Final = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ReadOnlySqlTransaction,
)

Pool: typing.TypeAlias = psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[typing.Any]]


# --- argument checks ------------------------------------------------------------------


_CONTROL_CHARACTERS: typing.Final = re.compile(r"[\x00-\x1f\x7f]")
# How deep a payload or result may nest: a worker decodes it on a stack it shares with the
# event loop and the database driver, well within Python's recursion limit of 1000.
MAX_JSON_DEPTH: typing.Final = 200
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


def to_json_text(value: object, what: str) -> str | None:
    """``value`` as JSON text for a jsonb column; ``None`` stays SQL NULL. Refuses what a
    worker could not decode again."""
    if value is None:
        return None
    if isinstance(value, dict | list | tuple) and json_depth_exceeds(value, MAX_JSON_DEPTH):
        raise ValueError(f"{what} nests more than {MAX_JSON_DEPTH} levels deep")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except TypeError as error:
        raise TypeError(f"{what} is not JSON-serialisable: {error}") from None
    except ValueError as error:  # NaN or infinity, which JSON cannot carry; huge integers
        raise ValueError(f"{what} is not valid JSON: {error}") from None
    except RecursionError:  # a structure that contains itself
        raise ValueError(f"{what} contains itself (a circular reference)") from None
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


def check_int(value: object, what: str, *, minimum: int, maximum: int = _INT32_MAX) -> int:
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
    return {
        "type": check_name(job.type, "job type"),
        "payload": to_json_text(job.payload, "payload"),
        "run_at": check_run_at(job.run_at),
        "max_attempts": None
        if job.max_attempts is None
        else check_int(job.max_attempts, "max_attempts", minimum=1),
        "queue": None if job.queue is None else check_name(job.queue, "queue"),
        "priority": check_int(job.priority, "priority", minimum=-_INT32_MAX),
    }


async def _try_lock(conn: psycopg.AsyncConnection[typing.Any], key: int) -> bool:
    """Take the advisory lock ``key`` for the current transaction, if nobody holds it."""
    cursor = await conn.execute(sql.query("advisory_lock_try"), {"key": key})
    row = await cursor.fetchone()
    return bool(row and row[0])


def empty_stats() -> types.QueueStats:
    return {status.value: 0 for status in types.JobStatus}


# --- the queue --------------------------------------------------------------------------


class Queue:
    """The queue API over one database. Use as ``async with Queue(url) as queue: ...``, or
    call ``open()``/``close()``. ``queue`` is the default queue name for enqueue and claim;
    ``prepared_statements=False`` when connecting through PgBouncer in transaction mode."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        pool: Pool | None = None,
        queue: str = DEFAULT_QUEUE,
        retry_delay: float | None = None,
        pool_max_size: int | None = None,
        pool_timeout: float | None = None,
        prepared_statements: bool = True,
    ) -> None:
        self.queue = check_name(queue, "queue")
        # Settings not given come from the environment, as for the command line.
        self.retry_delay: float = settings.RETRY_DELAY.check(
            settings.RETRY_DELAY.from_env() if retry_delay is None else retry_delay
        )
        pool_max_size = settings.POOL_SIZE.check(pool_max_size) or settings.POOL_SIZE.from_env()
        pool_timeout = settings.POOL_TIMEOUT.check(pool_timeout or settings.POOL_TIMEOUT.from_env())
        self._owns_pool = pool is None
        self._may_write = True  # until the database says this role or server cannot
        if pool is not None and isinstance(pool.conninfo, str):
            self.conninfo = pool.conninfo
        else:
            self.conninfo = db.resolve_database_url(database_url)
        self.pool: Pool = pool or db.make_pool(
            self.conninfo,
            max_size=pool_max_size or _PRODUCER_POOL_SIZE,
            timeout=pool_timeout,
            prepared_statements=prepared_statements,
        )

    async def open(self) -> Queue:
        if self._owns_pool:
            # One direct connection first: it fails at once with the server's own reason
            # (refused, bad password, no such database), where the pool would retry quietly
            # until its timeout and then say only that it timed out.
            probe = await psycopg.AsyncConnection.connect(
                self.conninfo, **db.connect_options(self.conninfo)
            )
            await probe.close()
            await self.pool.open(wait=True)
        return self

    async def close(self) -> None:
        if self._owns_pool:
            await self.pool.close()

    async def __aenter__(self) -> Queue:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _jobs(
        self,
        query: str,
        params: collections.abc.Mapping[str, typing.Any],
        conn: psycopg.AsyncConnection[typing.Any] | None = None,
    ) -> list[types.Job]:
        if conn is None:
            async with self.pool.connection() as pooled:
                return await self._jobs(query, params, pooled)
        cursor = conn.cursor(row_factory=db.job_row)
        await cursor.execute(sql.query(query), params)
        return await cursor.fetchall()

    async def _ids(
        self, query: str, params: collections.abc.Mapping[str, typing.Any]
    ) -> set[uuid.UUID]:
        """Runs a query whose rows start with a job id; returns those ids."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql.query(query), params)
            return {row[0] for row in await cursor.fetchall()}

    # enqueue ---------------------------------------------------------------------------

    async def enqueue_job(
        self,
        type: str,
        payload: typing.Any = None,
        *,
        run_at: datetime.datetime | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        now: datetime.datetime | None = None,
        conn: psycopg.AsyncConnection[typing.Any] | None = None,
    ) -> types.Job:
        """Add one job; returns it as stored (``.id`` is its UUID). With ``conn``, the insert
        joins that connection's current transaction: the job exists only if the
        application's own writes in it commit too."""
        params = check_new_job(types.NewJob(type, payload, run_at, max_attempts, queue, priority))
        params["queue"] = params["queue"] or self.queue
        params["now"] = check_time(now, "now")
        (job,) = await self._jobs("job_insert", params, conn)
        logger.info("[Queue] Enqueued job %s (type: %s)", job.id, job.type)
        return job

    async def enqueue_jobs(
        self,
        jobs: collections.abc.Iterable[types.NewJob],
        *,
        now: datetime.datetime | None = None,
        conn: psycopg.AsyncConnection[typing.Any] | None = None,
    ) -> list[types.Job]:
        """Add many jobs in one statement (one round trip); returns them in the given order.
        All are checked before any is written: one bad job enqueues none. With ``conn``, the
        insert joins that connection's current transaction."""
        checked = [check_new_job(job) for job in jobs]
        if not checked:
            return []
        ids = [uuid.uuid4() for _ in checked]
        params = {
            "ids": ids,
            "types": [job["type"] for job in checked],
            "payloads": [job["payload"] for job in checked],
            "run_ats": [job["run_at"] for job in checked],
            "max_attempts": [job["max_attempts"] for job in checked],
            "queues": [job["queue"] or self.queue for job in checked],
            "priorities": [job["priority"] for job in checked],
            "now": check_time(now, "now"),
        }
        stored = {job.id: job for job in await self._jobs("job_insert_many", params, conn)}
        in_order = [stored[job_id] for job_id in ids]
        for job in in_order:
            logger.debug("[Queue] Enqueued job %s (type: %s)", job.id, job.type)
        logger.info("[Queue] Enqueued %d jobs", len(in_order))
        return in_order

    # read ------------------------------------------------------------------------------

    async def get_job_status(self, job_id: uuid.UUID | str) -> types.Job | None:
        """The job with this id, or ``None`` when there is none."""
        jobs = await self._jobs("job_get", {"id": check_job_id(job_id)})
        return jobs[0] if jobs else None

    async def _counts(self, queue: str | None) -> dict[str, types.QueueStats]:
        """``{type: stats}`` summed over the queue (or all queues)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql.query("job_counts_sum"), {"queue": queue})
            rows = await cursor.fetchall()
            if sum(row[6] for row in rows) > _COUNTS_COMPACT_AFTER and self._may_write:
                try:
                    await self._compact_counts(conn)
                except _CANNOT_WRITE as error:
                    self._may_write = False
                    logger.info("[Queue] Not compacting the statistics: %s", str(error).strip())
        by_type: dict[str, types.QueueStats] = {}
        statuses = [status.value for status in types.JobStatus]
        for row in rows:
            stats = by_type.setdefault(row[1], empty_stats())
            for status, count in zip(statuses, row[2:6], strict=True):
                stats[status] += int(count)
        return by_type

    async def compact_counts(self) -> bool:
        """Fold the statistics' appended deltas together (workers call this every few
        seconds); ``False`` when another process was already doing it."""
        async with self.pool.connection() as conn:
            return await self._compact_counts(conn)

    @staticmethod
    async def _compact_counts(conn: psycopg.AsyncConnection[typing.Any]) -> bool:
        async with conn.transaction():
            if not await _try_lock(conn, _COUNTS_LOCK_KEY):
                return False
            await conn.execute(sql.query("job_counts_compact"))
            return True

    async def get_queue_stats(
        self, *, queue: str | None = None, type: str | None = None
    ) -> types.QueueStats:
        """``{pending, running, failed, done}``, zeros included; over every queue unless
        ``queue`` is given, every type unless ``type`` is. Reads a few counter rows, never
        the jobs table, so it costs the same with a million finished jobs as with none."""
        if queue is not None:
            check_name(queue, "queue")
        if type is not None:
            check_name(type, "job type")
        stats = empty_stats()
        for row_type, counts in (await self._counts(queue)).items():
            if type is None or row_type == type:
                for status, count in counts.items():
                    stats[status] += count
        return stats

    async def get_queue_stats_by_type(
        self, *, queue: str | None = None
    ) -> dict[str, types.QueueStats]:
        """``{type: {pending, running, failed, done}}`` for every type that has had jobs."""
        if queue is not None:
            check_name(queue, "queue")
        by_type = await self._counts(queue)
        return {row_type: by_type[row_type] for row_type in sorted(by_type)}

    # claim and finish ------------------------------------------------------------------

    async def claim_jobs(
        self,
        worker_id: str,
        *,
        limit: int = 1,
        queue: str | None = None,
        types_: collections.abc.Collection[str] | None = None,
        now: datetime.datetime | None = None,
    ) -> list[types.Job]:
        """Claim up to ``limit`` ready jobs for ``worker_id`` in one statement (priority,
        then ``run_at`` order). Each returned job is ``running``, locked by the worker, with
        ``attempts`` already counting this run. ``types_`` limits the job types claimed."""
        params = {
            "worker_id": check_name(worker_id, "worker id"),
            "limit": check_int(limit, "limit", minimum=1, maximum=10_000),
            "queue": check_name(queue, "queue") if queue is not None else self.queue,
            "types": None if types_ is None else [check_name(t, "job type") for t in types_],
            "now": check_time(now, "now"),
        }
        jobs = await self._jobs("job_claim", params)
        for job in jobs:
            logger.info("[Queue] Dequeued job %s (type: %s) by %s", job.id, job.type, worker_id)
        return jobs

    async def _finish(
        self,
        query: str,
        operation: str,
        job_id: uuid.UUID,
        params: dict[str, typing.Any],
        follow_ups: collections.abc.Sequence[types.NewJob] = (),
    ) -> types.Job:
        if follow_ups:
            async with self.pool.connection() as conn, conn.transaction():
                jobs = await self._jobs(query, {"id": job_id, **params}, conn)
                if jobs:
                    await self.enqueue_jobs(follow_ups, conn=conn)
        else:  # one statement is atomic alone: no BEGIN/COMMIT round trips
            jobs = await self._jobs(query, {"id": job_id, **params})
        if jobs:
            return jobs[0]
        current = await self.get_job_status(job_id)
        if current is None:
            raise types.JobNotFoundError(job_id)
        if params.get("worker_id") is not None and current.status in (
            types.JobStatus.PENDING,
            types.JobStatus.RUNNING,
        ):
            raise types.JobStateError(
                current, operation, f"worker {params['worker_id']} no longer holds it"
            )
        raise types.JobStateError(current, operation, "it has already finished")

    async def complete_job(
        self,
        job_id: uuid.UUID | str,
        result: typing.Any = None,
        *,
        enqueue: collections.abc.Iterable[types.NewJob] = (),
        worker_id: str | None = None,
        now: datetime.datetime | None = None,
    ) -> types.Job:
        """Mark a pending or running job ``done`` with ``result``, and enqueue the
        ``enqueue`` jobs in the same transaction: both happen or neither. A job that already
        finished raises ``JobStateError``; with ``worker_id``, so does a job that worker no
        longer holds (its lock went stale and the job was handed to another)."""
        params = {
            "result": to_json_text(result, "result"),
            "worker_id": None if worker_id is None else check_name(worker_id, "worker id"),
            "now": check_time(now, "now"),
        }
        follow_ups = list(enqueue)
        job = await self._finish(
            "job_complete", "complete", check_job_id(job_id), params, follow_ups
        )
        logger.info("[Queue] Job %s completed", job.id)
        return job

    async def fail_job(
        self,
        job_id: uuid.UUID | str,
        error: str,
        *,
        retry_delay: float | None = None,
        final: bool = False,
        worker_id: str | None = None,
        now: datetime.datetime | None = None,
    ) -> types.Job:
        """Record a failed attempt. While attempts remain the job goes back to ``pending``,
        due ``retry_delay`` seconds from now (default: the queue's, 30 s); after the last
        one, or with ``final=True``, it is ``failed``. Errors as for ``complete_job``."""
        if not isinstance(error, str):
            raise TypeError(f"error must be a string, not {type(error).__name__}")
        delay = (
            self.retry_delay if retry_delay is None else check_seconds(retry_delay, "retry_delay")
        )
        params = {
            "error": error,
            "retry_delay": delay,
            "final": bool(final),
            "worker_id": None if worker_id is None else check_name(worker_id, "worker id"),
            "now": check_time(now, "now"),
        }
        job = await self._finish("job_fail", "fail", check_job_id(job_id), params)
        if job.status is types.JobStatus.PENDING:
            logger.warning(
                "[Queue] Job %s failed (attempt %d/%d), retrying at %s: %s",
                job.id,
                job.attempts,
                job.max_attempts,
                job.run_at.isoformat(),
                error,
            )
        else:
            logger.error(
                "[Queue] Job %s failed permanently after %d attempts: %s",
                job.id,
                job.attempts,
                error,
            )
        return job

    async def cleanup_stale_locks(
        self,
        threshold: float | None = None,
        *,
        queue: str | None = None,
        now: datetime.datetime | None = None,
    ) -> int:
        """Release running jobs with no sign of life (heartbeat, else lock time) for
        ``threshold`` seconds (default 300): back to pending, or failed when out of
        attempts. Returns how many were released. Every queue unless ``queue`` is given."""
        rescued = await self.rescue_stale_jobs(
            settings.STALE_THRESHOLD.check(threshold), queue=queue, now=now
        )
        return len(rescued)

    async def rescue_stale_jobs(
        self,
        threshold: float,
        *,
        queue: str | None = None,
        now: datetime.datetime | None = None,
        only_one_rescuer: bool = False,
    ) -> list[types.RescuedJob]:
        """``cleanup_stale_locks`` with the threshold in seconds, returning what it rescued
        and from which worker. Safe from any number of processes at once; with
        ``only_one_rescuer`` (what workers use) a call returns ``[]`` at once while another
        process that asked the same is rescuing."""
        params = {
            "threshold": check_seconds(threshold, "threshold", allow_zero=False),
            "queue": None if queue is None else check_name(queue, "queue"),
            "now": check_time(now, "now"),
        }
        async with self.pool.connection() as conn, conn.transaction():
            lock_key = _RESCUE_LOCK_KEY + zlib.crc32((queue or "").encode())
            if only_one_rescuer and not await _try_lock(conn, lock_key):
                return []
            cursor = await conn.execute(sql.query("job_rescue_stale"), params)
            rows = await cursor.fetchall()
        rescued = [
            types.RescuedJob(
                job_id, job_type, job_queue, types.JobStatus(status), attempts, by, seen
            )
            for job_id, job_type, job_queue, status, attempts, by, seen in rows
        ]
        for job in rescued:
            logger.warning(
                "[Queue] Released stale job %s (type: %s) from worker %s, silent since %s -> %s",
                job.id,
                job.type,
                job.worker_id,
                job.last_seen.isoformat(),
                job.status,
            )
        return rescued

    async def heartbeat(
        self,
        worker_id: str,
        job_ids: collections.abc.Collection[uuid.UUID],
        *,
        now: datetime.datetime | None = None,
    ) -> set[uuid.UUID]:
        """Refresh the locks ``worker_id`` holds on ``job_ids``; returns the ids it still
        holds (a missing one was released as stale and may be running elsewhere)."""
        if not job_ids:
            return set()
        params = {"ids": list(job_ids), "worker_id": worker_id, "now": check_time(now, "now")}
        return await self._ids("job_heartbeat", params)

    async def complete_jobs(
        self,
        worker_id: str,
        results: collections.abc.Sequence[tuple[uuid.UUID, typing.Any]],
        *,
        now: datetime.datetime | None = None,
    ) -> set[uuid.UUID]:
        """Complete many of ``worker_id``'s running jobs in one statement; returns the ids
        it still held (and so completed). Results are checked before anything is written."""
        if not results:
            return set()
        params = {
            "ids": [job_id for job_id, _ in results],
            "results": [to_json_text(result, "result") for _, result in results],
            "worker_id": worker_id,
            "now": check_time(now, "now"),
        }
        completed = await self._ids("job_complete_many", params)
        for job_id, _ in results:
            if job_id in completed:
                logger.info("[Queue] Job %s completed", job_id)
        return completed

    async def release_jobs(
        self,
        worker_id: str,
        job_ids: collections.abc.Collection[uuid.UUID],
        *,
        keep_attempt: bool = False,
        error: str | None = None,
        now: datetime.datetime | None = None,
    ) -> list[types.Job]:
        """Put ``worker_id``'s unfinished jobs back to ``pending`` at once; returns the jobs
        released. A worker shutting down gives the attempt back; one that stops because it
        failed keeps it counted (``keep_attempt``), so a job out of attempts ends
        ``failed`` with ``error``."""
        if not job_ids:
            return []
        params = {
            "ids": list(job_ids),
            "worker_id": worker_id,
            "keep_attempt": keep_attempt,
            "error": error,
            "now": check_time(now, "now"),
        }
        released = await self._jobs("job_release", params)
        for job in released:
            logger.warning("[Queue] Released job %s (type: %s) -> %s", job.id, job.type, job.status)
        return released

    async def next_run_at(
        self,
        *,
        queue: str | None = None,
        types_: collections.abc.Collection[str] | None = None,
    ) -> datetime.datetime | None:
        """When the earliest pending job of the queue is due (``None``: no pending job)."""
        params = {
            "queue": self.queue if queue is None else queue,
            "types": None if types_ is None else list(types_),
        }
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql.query("job_next_run_at"), params)
            row = await cursor.fetchone()
        return row[0] if row else None


# --- module-level API, as in the seed ------------------------------------------------------

_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Queue] = weakref.WeakKeyDictionary()
_default_settings: dict[str, typing.Any] = {}


def configure(database_url: str | None = None, **settings: typing.Any) -> None:
    """Set what the module-level functions connect to (default: ``$DATABASE_URL``).
    ``settings`` are ``Queue`` keyword arguments, e.g. ``queue="books"``."""
    _default_settings.clear()
    _default_settings.update(settings, database_url=database_url)
    _defaults.clear()


async def default_queue() -> Queue:
    """The ``Queue`` behind the module-level functions, opened on first use in this loop."""
    loop = asyncio.get_running_loop()
    queue = _defaults.get(loop)
    if queue is None:
        queue = Queue(**_default_settings)
        _defaults[loop] = queue
        await queue.open()
    return queue


async def close_default_queue() -> None:
    queue = _defaults.pop(asyncio.get_running_loop(), None)
    if queue is not None:
        await queue.close()


_P = typing.ParamSpec("_P")
_T = typing.TypeVar("_T")


def _on_default_queue(
    method: collections.abc.Callable[
        typing.Concatenate[Queue, _P], collections.abc.Coroutine[typing.Any, typing.Any, _T]
    ],
) -> collections.abc.Callable[_P, collections.abc.Coroutine[typing.Any, typing.Any, _T]]:
    """``Queue.method`` as a module function on the default queue, same signature."""

    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await method(await default_queue(), *args, **kwargs)

    return call


# The seed's functions: the Queue's methods on the default queue, one line each.
enqueue_job = _on_default_queue(Queue.enqueue_job)
enqueue_jobs = _on_default_queue(Queue.enqueue_jobs)
get_job_status = _on_default_queue(Queue.get_job_status)
get_queue_stats = _on_default_queue(Queue.get_queue_stats)
complete_job = _on_default_queue(Queue.complete_job)
fail_job = _on_default_queue(Queue.fail_job)
cleanup_stale_locks = _on_default_queue(Queue.cleanup_stale_locks)
