"""The worker's session with the queue: claim jobs, keep their locks with heartbeats,
finish them (complete, fail, or hand back unfinished), and find when the next one is due.

Each function is a method of ``jobqueue.Queue`` (``self``: the queue whose pool it uses);
they live here, apart from the producer API, because only workers (and tests standing in
for one) call them. A call that names a ``worker_id`` acts only on jobs that worker still
holds: a job whose lock went stale may be running elsewhere.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import logging
import typing
import uuid

from jobqueue import checks, db, logs, producer, sql, statements, types

logger = logging.getLogger("jobqueue.queue")


async def claim_jobs(
    self: producer.Producer,
    worker_id: str,
    *,
    limit: int = 1,
    queue: str | None = None,
    types_: collections.abc.Collection[str] | None = None,
    now: datetime.datetime | None = None,
    job_factory: collections.abc.Callable[..., types.Job] = types.Job,
    after: tuple[int, datetime.datetime] | None = None,
    limited: bool = False,
    after_key: str | None = None,
) -> list[types.Job]:
    """Claim up to ``limit`` ready jobs for ``worker_id`` in one statement (priority,
    then ``run_at`` order). Each returned job is ``running``, locked by the worker, with
    ``attempts`` already counting this run. ``types_`` limits the job types claimed.
    ``job_factory`` builds each job from its columns: the worker builds the ``RunningJob``
    its handler gets, with no copy. With ``after=(priority, run_at)`` only jobs of a higher
    priority, and jobs of that priority due at ``run_at`` or later, are claimed: the place
    of an earlier claim, from which the index is read without the entries before it (see
    the query ``job_claim_after``). A queue with limits (``queue_has_limits``) gives
    nothing to these claims: ``limited=True`` claims within its limits, taking turns between
    concurrency keys from the one after ``after_key`` (the last one served)."""
    params = {
        "worker_id": checks.check_name(worker_id, "worker id"),
        "limit": checks.check_int(limit, "limit", minimum=1, maximum=10_000),
        "queue": checks.check_name(queue, "queue") if queue is not None else self.queue,
        "types": None if types_ is None else [checks.check_name(t, "job type") for t in types_],
        "now": checks.check_time(now, "now"),
    }
    query = "job_claim"
    if limited:
        query = "job_claim_limited"
        params["after_key"] = None if after_key is None else checks.check_name(after_key, "key")
    elif after is not None:
        query = "job_claim_after"
        params["after_priority"] = checks.check_int(after[0], "priority", minimum=-checks.INT32_MAX)
        params["after_run_at"] = checks.check_time(after[1], "run_at")
    jobs = await statements.jobs(self.pool, query, params, make=job_factory, times_in_range=True)
    if jobs and logger.isEnabledFor(logging.INFO):
        logs.info_lines(
            logger,
            [
                f"[Queue] Dequeued job {logs.id_text(job.id)} (type: {job.type}) by {worker_id}"
                for job in jobs
            ],
        )
    return jobs


async def _finish(
    self: producer.Producer,
    query: str,
    operation: str,
    job_id: uuid.UUID,
    params: dict[str, typing.Any],
    follow_ups: collections.abc.Sequence[types.NewJob] = (),
) -> types.Job:
    if follow_ups:
        async with db.Lease(self.pool) as conn, conn.transaction():
            jobs = await statements.jobs(self.pool, query, {"id": job_id, **params}, conn)
            # A job cancelled while it ran ends cancelled, and its follow-ups are dropped.
            if jobs and jobs[0].status is types.JobStatus.DONE:
                enqueued = await self.enqueue_jobs(follow_ups, conn=conn)
                ids = [job.id for job in enqueued]
                await conn.execute(
                    sql.query("job_follow_ups_record"), {"id": job_id, "follow_ups": ids}
                )
                jobs = [dataclasses.replace(jobs[0], follow_ups=ids)]
    else:  # one statement is atomic alone: no BEGIN/COMMIT round trips
        jobs = await statements.jobs(self.pool, query, {"id": job_id, **params})
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
    self: producer.Producer,
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
    result_json = checks.to_json_text(result, "result")
    return await complete_job_json(
        self, job_id, result_json, enqueue=enqueue, worker_id=worker_id, now=now
    )


async def complete_job_json(
    self: producer.Producer,
    job_id: uuid.UUID | str,
    result_json: str | None,
    *,
    enqueue: collections.abc.Iterable[types.NewJob] = (),
    worker_id: str | None = None,
    now: datetime.datetime | None = None,
) -> types.Job:
    """``complete_job`` with the result already JSON text (as the runner makes it)."""
    params = {
        "result": result_json,
        "worker_id": None if worker_id is None else checks.check_name(worker_id, "worker id"),
        "now": checks.check_time(now, "now"),
    }
    follow_ups = list(enqueue)
    job = await _finish(
        self, "job_complete", "complete", checks.check_job_id(job_id), params, follow_ups
    )
    logger.info("[Queue] Job %s completed", job.id)
    return job


async def fail_job(
    self: producer.Producer,
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
        self.retry_delay
        if retry_delay is None
        else checks.check_seconds(retry_delay, "retry_delay")
    )
    params = {
        "error": error,
        "retry_delay": delay,
        "final": bool(final),
        "worker_id": None if worker_id is None else checks.check_name(worker_id, "worker id"),
        "now": checks.check_time(now, "now"),
    }
    job = await _finish(self, "job_fail", "fail", checks.check_job_id(job_id), params)
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


async def snooze_job(
    self: producer.Producer,
    job_id: uuid.UUID | str,
    seconds: float,
    *,
    worker_id: str | None = None,
    now: datetime.datetime | None = None,
) -> types.Job:
    """Put a pending or running job back to ``pending``, due in ``seconds``, without using
    up an attempt (what a handler's ``Snooze`` does); errors as for ``complete_job``."""
    params = {
        "seconds": checks.check_seconds(seconds, "seconds", allow_zero=False),
        "worker_id": None if worker_id is None else checks.check_name(worker_id, "worker id"),
        "now": checks.check_time(now, "now"),
    }
    job = await _finish(self, "job_snooze", "snooze", checks.check_job_id(job_id), params)
    logger.info("[Queue] Job %s snoozed until %s", job.id, job.run_at.isoformat())
    return job


async def heartbeat(
    self: producer.Producer,
    worker_id: str,
    job_ids: collections.abc.Collection[uuid.UUID],
    *,
    now: datetime.datetime | None = None,
) -> dict[uuid.UUID, bool]:
    """Refresh the locks ``worker_id`` holds on ``job_ids``; returns the ids it still
    holds (a missing one was released as stale and may be running elsewhere), each with
    whether someone asked to cancel it."""
    if not job_ids:
        return {}
    params = {"ids": list(job_ids), "worker_id": worker_id, "now": checks.check_time(now, "now")}
    return dict(await statements.rows(self.pool, "job_heartbeat", params))


async def complete_jobs(
    self: producer.Producer,
    worker_id: str,
    results: collections.abc.Sequence[tuple[uuid.UUID, str | None]],
    *,
    now: datetime.datetime | None = None,
) -> set[uuid.UUID]:
    """Complete many of ``worker_id``'s running jobs in one statement; returns the ids
    it still held (and so completed). Each result is JSON text already (``None``: no
    result), as the runner serialised it: once, when it checked the result could be stored."""
    if not results:
        return set()
    params = {
        "ids": [job_id for job_id, _ in results],
        "results": [result_json for _, result_json in results],
        "worker_id": worker_id,
        "now": checks.check_time(now, "now"),
    }
    completed = await statements.ids(self.pool, "job_complete_many", params)
    if completed and logger.isEnabledFor(logging.INFO):
        logs.info_lines(
            logger,
            [
                f"[Queue] Job {logs.id_text(job_id)} completed"
                for job_id, _ in results
                if len(completed) == len(results) or job_id in completed
            ],
        )
    return completed


async def release_jobs(
    self: producer.Producer,
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
        "now": checks.check_time(now, "now"),
    }
    released = await statements.jobs(self.pool, "job_release", params)
    for job in released:
        logger.warning("[Queue] Released job %s (type: %s) -> %s", job.id, job.type, job.status)
    return released


async def next_run_at(
    self: producer.Producer,
    *,
    queue: str | None = None,
    types_: collections.abc.Collection[str] | None = None,
) -> datetime.datetime | None:
    """When the earliest pending job of the queue is due (``None``: no pending job)."""
    params = {
        "queue": self.queue if queue is None else queue,
        "types": None if types_ is None else list(types_),
    }
    async with db.Lease(self.pool) as conn:
        cursor = await conn.execute(sql.query("job_next_run_at"), params)
        row = await cursor.fetchone()
    return row[0] if row else None
