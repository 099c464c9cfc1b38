"""Keeping a queue in shape, from outside any worker: what the operator (and a person with
the CLI) calls. Each function is one or a few statements through a ``Queue``'s pool, safe to
run from any number of processes at once.

- ``queue_depth``: per queue and type, how much work waits (ready now, delayed, due soon),
  how old the oldest ready job is, and how much runs; failed and done from the statistics.
  One statement, reading pending and running rows through their partial indexes.
- ``Queue.rescue_stale_jobs``: running jobs of dead workers back to pending (or failed),
  returning what it took from whom. Workers run it themselves too.
- ``prune_finished_jobs``: retention, deleting finished jobs older than a threshold in
  bounded batches (each its own short transaction), so it never holds many locks for long.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import typing

from jobqueue import queue as queue_module
from jobqueue import sql

logger = logging.getLogger("jobqueue.maintenance")

DEFAULT_DUE_WITHIN: typing.Final = 60.0
DEFAULT_PRUNE_BATCH: typing.Final = 1000


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

    @property
    def pending(self) -> int:
        return self.ready + self.delayed


async def queue_depth(
    queue: queue_module.Queue,
    *,
    name: str | None = None,
    due_within: float = DEFAULT_DUE_WITHIN,
    now: datetime.datetime | None = None,
) -> list[QueueDepth]:
    """The backlog of every queue (or of queue ``name``), per job type. ``due_soon`` counts
    delayed jobs falling due within ``due_within`` seconds: work to scale up for ahead."""
    params = {
        "queue": None if name is None else queue_module.check_name(name, "queue"),
        "due_within": queue_module.check_seconds(due_within, "due_within"),
        "now": queue_module.check_time(now, "now"),
    }
    async with queue.pool.connection() as conn:
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
        )
        for row in rows
    ]


async def prune_finished_jobs(
    queue: queue_module.Queue,
    older_than: float,
    *,
    name: str | None = None,
    batch_size: int = DEFAULT_PRUNE_BATCH,
    max_batches: int | None = None,
    now: datetime.datetime | None = None,
) -> int:
    """Delete ``done`` and ``failed`` jobs last changed more than ``older_than`` seconds ago,
    ``batch_size`` at a time, until none is left (or ``max_batches`` ran); returns how many
    were deleted. The statistics stay exact: deleting a job takes it out of its counts."""
    params = {
        "older_than": queue_module.check_seconds(older_than, "older_than", allow_zero=False),
        "queue": None if name is None else queue_module.check_name(name, "queue"),
        "batch_size": queue_module.check_int(batch_size, "batch_size", minimum=1, maximum=100_000),
        "now": queue_module.check_time(now, "now"),
    }
    if max_batches is not None:
        queue_module.check_int(max_batches, "max_batches", minimum=1)
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        async with queue.pool.connection() as conn:
            cursor = await conn.execute(sql.query("job_prune_finished"), params)
        batches += 1
        deleted += max(cursor.rowcount, 0)
        if cursor.rowcount < batch_size:
            break
    if deleted:
        logger.info("[Maintenance] Pruned %d finished jobs older than %gs", deleted, older_than)
    return deleted
