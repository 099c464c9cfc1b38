"""Keeping a queue in shape, from outside any worker: what the operator (and a person with
the CLI) calls. Each function is one or a few statements through a ``Queue``'s pool, safe to
run from any number of processes at once. The rescue functions are also ``Queue`` methods
(their first argument, ``self``, is the queue), as the seed had them.

- ``queue_depth``: per queue and type, how much work waits (ready now, delayed, due soon),
  how old the oldest ready job is, and how much runs; failed, done and cancelled from the
  statistics.
  One statement, reading pending and running rows through their partial indexes.
- ``rescue_stale_jobs`` (``Queue.rescue_stale_jobs``; the seed's ``cleanup_stale_locks``
  counts them): running jobs of dead workers back to pending (or failed), returning what
  it took from whom. Workers run it themselves too.
- ``prune_finished_jobs``: retention, deleting finished jobs older than a threshold in
  bounded batches (each its own short transaction), so it never holds many locks for long.
- ``vacuum_health`` (also ``Queue.vacuum_health``): whether vacuum keeps the queue's tables
  in shape: their dead and live rows, sizes and vacuums, and how far back the oldest
  transaction, slot or prepared transaction holds the database's xmin horizon. Two
  statements on the statistics views, readable by any role (one figure needs more: see
  ``VacuumHealth``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import logging
import typing
import zlib

from jobqueue import checks, db, producer, settings, sql, statements, types

logger = logging.getLogger("jobqueue.maintenance")
# The stale-job rescue logs as the seed did, as the queue.
queue_logger = logging.getLogger("jobqueue.queue")

DEFAULT_DUE_WITHIN: typing.Final = 60.0
DEFAULT_PRUNE_BATCH: typing.Final = 1000
FINISHED: typing.Final = (
    types.JobStatus.DONE.value,
    types.JobStatus.FAILED.value,
    types.JobStatus.CANCELLED.value,
)
_RESCUE_LOCK_KEY: typing.Final = 0x6A6F6271_72736375  # "jobqrscu", plus the queue's CRC32
# The tables whose rows are updated or deleted as jobs run, so that vacuum has work on them:
# jobs (claim, finish, prune), job_counts (deltas appended, then folded), job_workers (a row
# renewed every few heartbeats) and job_schedules (advanced every tick). The others only grow.
CHURNING_TABLES: typing.Final = ("jobs", "job_counts", "job_workers", "job_schedules")


@dataclasses.dataclass(frozen=True, slots=True)
class QueueDepth:
    """One queue and job type's backlog. ``oldest_ready_age``: seconds the longest-waiting
    ready job has been due (``None``: nothing ready)."""

    queue: str
    type: str
    ready: int
    delayed: int
    due_soon: int
    running: int
    failed: int
    done: int
    oldest_ready_age: float | None
    cancelled: int = 0

    @property
    def pending(self) -> int:
        return self.ready + self.delayed


async def queue_depth(
    queue: producer.Producer,
    *,
    name: str | None = None,
    due_within: float = DEFAULT_DUE_WITHIN,
    now: datetime.datetime | None = None,
) -> list[QueueDepth]:
    """The backlog of every queue (or of queue ``name``), per job type. ``due_soon`` counts
    delayed jobs falling due within ``due_within`` seconds: work to scale up for ahead."""
    params = {
        "queue": None if name is None else checks.check_name(name, "queue"),
        "due_within": checks.check_seconds(due_within, "due_within"),
        "now": checks.check_time(now, "now"),
    }
    async with db.Lease(queue.pool) as conn:
        cursor = await conn.execute(sql.query("queue_depth_measure"), params)
        rows = await cursor.fetchall()
    return [
        QueueDepth(
            queue=row[0],
            type=row[1],
            ready=int(row[2]),
            delayed=int(row[3]),
            due_soon=int(row[4]),
            running=int(row[5]),
            failed=int(row[6]),
            done=int(row[7]),
            oldest_ready_age=row[8],
            cancelled=int(row[9]),
        )
        for row in rows
    ]


async def prune_finished_jobs(
    queue: producer.Producer,
    older_than: float,
    *,
    name: str | None = None,
    batch_size: int = DEFAULT_PRUNE_BATCH,
    max_batches: int | None = None,
    statuses: collections.abc.Collection[str] = FINISHED,
    now: datetime.datetime | None = None,
) -> int:
    """Delete finished jobs (``done``, ``failed`` and ``cancelled``, or those of
    ``statuses``) last changed more than ``older_than`` seconds ago, ``batch_size`` at a
    time, until none is left (or ``max_batches`` ran); returns how many were deleted. The
    statistics stay exact: deleting a job takes it out of its counts."""
    unknown = set(statuses) - set(FINISHED)
    if unknown or not statuses:
        raise ValueError(f"statuses must be among {', '.join(FINISHED)}, not {sorted(statuses)}")
    params = {
        "statuses": sorted(statuses),
        "older_than": checks.check_seconds(older_than, "older_than", allow_zero=False),
        "queue": None if name is None else checks.check_name(name, "queue"),
        "batch_size": checks.check_int(batch_size, "batch_size", minimum=1, maximum=100_000),
        "now": checks.check_time(now, "now"),
    }
    if max_batches is not None:
        checks.check_int(max_batches, "max_batches", minimum=1)
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        async with db.Lease(queue.pool) as conn:
            cursor = await conn.execute(sql.query("job_prune_finished"), params)
        batches += 1
        deleted += max(cursor.rowcount, 0)
        if cursor.rowcount < batch_size:
            break
    if deleted:
        logger.info("[Maintenance] Pruned %d finished jobs older than %gs", deleted, older_than)
    return deleted


async def running_by_worker(queue: producer.Producer, *, name: str | None = None) -> dict[str, int]:
    """How many jobs each worker (by ``locked_by``) is running, in queue ``name`` or all."""
    params = {"queue": None if name is None else checks.check_name(name, "queue")}
    async with db.Lease(queue.pool) as conn:
        cursor = await conn.execute(sql.query("job_running_by_worker"), params)
        rows = await cursor.fetchall()
    return {str(worker): int(count) for worker, count in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class TableVacuum:
    """One table's side of ``VacuumHealth``, from ``pg_stat_user_tables`` and the sizes.
    ``table_bytes``: heap, TOAST, free space and visibility maps (``pg_table_size``);
    ``index_bytes``: all its indexes. ``last_vacuum_age``: seconds since its last vacuum,
    manual or automatic (``None``: none since the statistics were reset). ``vacuums`` and
    ``autovacuums``: how many of each it had since then."""

    table: str
    live_tuples: int
    dead_tuples: int
    table_bytes: int
    index_bytes: int
    last_vacuum_age: float | None
    vacuums: int
    autovacuums: int


@dataclasses.dataclass(frozen=True, slots=True)
class VacuumHealth:
    """Whether vacuum keeps a queue's database in shape. ``tables``: the queue's tables that
    churn (``CHURNING_TABLES``, those the schema has). The xmin horizon is the oldest
    transaction whose view vacuum must keep: a row deleted after it stays, dead, however
    often vacuum runs. ``horizon_age``: how many transactions old it is (the oldest snapshot
    or transaction id of a session, a replication slot's xmin, a prepared transaction; any
    role sees all of these). ``oldest_transaction_age``: seconds since the oldest holder's
    transaction began (0: none holds it back), which sees other roles' sessions only when
    ``sees_all_sessions`` (the role is a member of ``pg_read_all_stats``, e.g. through
    ``pg_monitor``)."""

    tables: tuple[TableVacuum, ...]
    horizon_age: int
    oldest_transaction_age: float
    sees_all_sessions: bool


async def vacuum_health(
    self: producer.Producer, *, now: datetime.datetime | None = None
) -> VacuumHealth:
    """The vacuum health of the queue's database (see ``VacuumHealth``): two reads of the
    statistics views on one connection. ``now`` is the time the ages are measured at."""
    params = {"tables": list(CHURNING_TABLES), "now": checks.check_time(now, "now")}
    async with db.Lease(self.pool) as conn:
        cursor = await conn.execute(sql.query("schema_vacuum_stats"), params)
        tables = await cursor.fetchall()
        cursor = await conn.execute(sql.query("database_xmin_horizon"), params)
        horizon = await cursor.fetchone()
    assert horizon is not None  # an aggregate: always one row
    return VacuumHealth(
        tables=tuple(
            TableVacuum(name, int(live), int(dead), int(size), int(index), age, int(vac), int(auto))
            for name, live, dead, size, index, age, vac, auto in tables
        ),
        horizon_age=int(horizon[0]),
        oldest_transaction_age=float(horizon[1]),
        sees_all_sessions=bool(horizon[2]),
    )


async def cleanup_stale_locks(
    self: producer.Producer,
    threshold: float | None = None,
    *,
    queue: str | None = None,
    now: datetime.datetime | None = None,
) -> int:
    """Release running jobs with no sign of life (heartbeat, else lock time) for
    ``threshold`` seconds (default 300): back to pending, or failed when out of attempts.
    Returns how many were released. Every queue unless ``queue`` is given."""
    rescued = await rescue_stale_jobs(
        self, settings.STALE_THRESHOLD.check(threshold), queue=queue, now=now
    )
    return len(rescued)


async def rescue_stale_jobs(
    self: producer.Producer,
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
        "threshold": checks.check_seconds(threshold, "threshold", allow_zero=False),
        "queue": None if queue is None else checks.check_name(queue, "queue"),
        "now": checks.check_time(now, "now"),
    }
    async with db.Lease(self.pool) as conn, conn.transaction():
        lock_key = _RESCUE_LOCK_KEY + zlib.crc32((queue or "").encode())
        if only_one_rescuer and not await statements.try_lock(conn, lock_key):
            return []
        cursor = await conn.execute(sql.query("job_rescue_stale"), params)
        rows = await cursor.fetchall()
    rescued = [
        types.RescuedJob(job_id, job_type, job_queue, types.JobStatus(status), attempts, by, seen)
        for job_id, job_type, job_queue, status, attempts, by, seen in rows
    ]
    for job in rescued:
        queue_logger.warning(
            "[Queue] Released stale job %s (type: %s) from worker %s, silent since %s -> %s",
            job.id,
            job.type,
            job.worker_id,
            job.last_seen.isoformat(),
            job.status,
        )
    return rescued
