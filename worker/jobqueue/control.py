"""Job control: what people operate a queue with, beside enqueueing. List and search jobs,
cancel them (pending at once; running ones told to stop), retry failed or cancelled ones,
delete finished ones, pause and resume a queue. The CLI (``jobqueue jobs ...``, ``jobqueue
queues ...``) and the web UI call these, and so may an application; there is no other
implementation of any of them.

Each function is a method of ``jobqueue.Queue`` (``self``: the queue whose pool it uses). A
``JobFilter`` names the jobs, the same way for every operation (the database function
``jobs_matching`` of migration 0004). Bulk operations go in batches, each its own short
statement, so they are safe under load: a batch locks only its own rows, and a row changed
meanwhile by a worker is checked again as it is locked, never overwritten blindly.
"""

from __future__ import annotations

import collections.abc
import datetime
import logging
import typing
import uuid

from jobqueue import checks, producer, statements, types

logger = logging.getLogger("jobqueue.queue")

DEFAULT_PAGE: typing.Final = 100
MAX_PAGE: typing.Final = 10_000
DEFAULT_BATCH: typing.Final = 1000
CANCEL_REASON: typing.Final = "cancelled"


async def list_jobs(
    self: producer.Producer,
    job_filter: types.JobFilter | None = None,
    *,
    oldest_first: bool = False,
    after: uuid.UUID | str | None = None,
    limit: int = DEFAULT_PAGE,
) -> list[types.Job]:
    """A page of the jobs ``job_filter`` names, newest first (or ``oldest_first``), at most
    ``limit``. For the next page pass the last job's id as ``after``: pages are keyed by
    the time-ordered id, so they stay right while jobs are added or removed."""
    params = checks.check_filter(job_filter)
    params["after"] = None if after is None else checks.check_job_id(after)
    params["limit"] = checks.check_int(limit, "limit", minimum=1, maximum=MAX_PAGE)
    query = "job_list_oldest" if oldest_first else "job_list_newest"
    if oldest_first and await _backlog_is_small(self, params):
        query = "job_list_waiting_oldest"
    return await statements.jobs(self.pool, query, params)


_WAITING: typing.Final = frozenset({types.JobStatus.PENDING.value, types.JobStatus.RUNNING.value})
# A backlog up to this many jobs is read whole (through the partial indexes of pending and
# running jobs) to list its oldest first: a few tens of milliseconds.
WAITING_READ_WHOLE: typing.Final = 100_000


async def _backlog_is_small(self: producer.Producer, params: dict[str, typing.Any]) -> bool:
    """Whether the filter names only pending or running jobs, few enough (by the
    statistics, which cost nothing) to read them all: the oldest of them may sit behind
    millions of finished jobs in the primary key's order."""
    if not params["statuses"] or not set(params["statuses"]) <= _WAITING:
        return False
    backlog = await self.count_from_statistics(params["queue"], params["types"], params["statuses"])
    return backlog <= WAITING_READ_WHOLE


_T = typing.TypeVar("_T")


async def _until_none_left(
    batch: collections.abc.Callable[[], collections.abc.Awaitable[collections.abc.Iterable[_T]]],
) -> list[_T]:
    """Run a batched statement (``batch``) again until a batch changes nothing; returns
    every row the batches returned. Each batch is its own short statement: a bulk operation
    never holds many row locks for long."""
    changed: list[_T] = []
    while True:
        rows = list(await batch())
        if not rows:
            return changed
        changed += rows


def _batch_limit(batch_size: int) -> int:
    return checks.check_int(batch_size, "batch_size", minimum=1, maximum=100_000)


async def cancel_jobs(
    self: producer.Producer,
    job_filter: types.JobFilter,
    *,
    reason: str = CANCEL_REASON,
    batch_size: int = DEFAULT_BATCH,
    now: datetime.datetime | None = None,
) -> list[types.Job]:
    """Cancel the pending and running jobs ``job_filter`` names; returns them as they now
    are. A pending job becomes ``cancelled`` at once, with ``reason`` as its error. A running
    one stays ``running`` with ``cancel_requested_at`` set while its worker stops it (told
    by NOTIFY at once, else by its next heartbeat); it then ends ``cancelled``. A cancelled
    job is never retried by itself and its follow-up jobs are never enqueued."""
    params = checks.check_filter(job_filter)
    params["reason"] = checks.check_text(reason, "reason")
    params["now"] = checks.check_time(now, "now")
    params["limit"] = _batch_limit(batch_size)
    jobs = await _until_none_left(lambda: statements.jobs(self.pool, "job_cancel", params))
    if jobs:
        running = sum(job.status is types.JobStatus.RUNNING for job in jobs)
        logger.info("[Queue] Cancelled %d jobs (%d running, asked to stop)", len(jobs), running)
    return jobs


async def cancel_job(
    self: producer.Producer,
    job_id: uuid.UUID | str,
    *,
    reason: str = CANCEL_REASON,
    now: datetime.datetime | None = None,
) -> types.Job:
    """Cancel one job (see ``cancel_jobs``); returns it as it now is: ``cancelled``, or
    ``running`` with ``cancel_requested_at`` set until its worker has stopped it. A job
    already finished raises ``JobStateError``; an unknown id ``JobNotFoundError``."""
    checked = checks.check_job_id(job_id)
    found = await cancel_jobs(self, types.JobFilter(ids=[checked]), reason=reason, now=now)
    return found[0] if found else await _unchanged(self, checked, "cancel")


async def retry_jobs(
    self: producer.Producer,
    job_filter: types.JobFilter,
    *,
    batch_size: int = DEFAULT_BATCH,
    now: datetime.datetime | None = None,
) -> list[types.Job]:
    """Put the ``failed`` and ``cancelled`` jobs ``job_filter`` names back to ``pending``,
    due now; returns them. Their attempts stay counted and ``max_attempts`` grows to allow
    at least one more; the last error stays on the job until its next outcome."""
    params = checks.check_filter(job_filter)
    params["now"] = checks.check_time(now, "now")
    params["limit"] = _batch_limit(batch_size)
    jobs = await _until_none_left(lambda: statements.jobs(self.pool, "job_retry", params))
    if jobs:
        logger.info("[Queue] Retrying %d jobs", len(jobs))
    return jobs


async def retry_job(
    self: producer.Producer, job_id: uuid.UUID | str, *, now: datetime.datetime | None = None
) -> types.Job:
    """Retry one ``failed`` or ``cancelled`` job (see ``retry_jobs``); any other status
    raises ``JobStateError``, an unknown id ``JobNotFoundError``."""
    checked = checks.check_job_id(job_id)
    found = await retry_jobs(self, types.JobFilter(ids=[checked]), now=now)
    return found[0] if found else await _unchanged(self, checked, "retry")


async def delete_jobs(
    self: producer.Producer, job_filter: types.JobFilter, *, batch_size: int = DEFAULT_BATCH
) -> int:
    """Delete the finished (``done``, ``failed``, ``cancelled``) jobs ``job_filter`` names;
    returns how many. Pending and running jobs are never deleted: cancel them first."""
    params = checks.check_filter(job_filter)
    params["limit"] = _batch_limit(batch_size)
    deleted = len(await _until_none_left(lambda: statements.ids(self.pool, "job_delete", params)))
    if deleted:
        logger.info("[Queue] Deleted %d jobs", deleted)
    return deleted


async def _unchanged(self: producer.Producer, job_id: uuid.UUID, operation: str) -> types.Job:
    """Why one job was not changed: it does not exist, or its status does not allow it."""
    current = await self.get_job_status(job_id)
    if current is None:
        raise types.JobNotFoundError(job_id)
    if operation == "cancel" and current.cancel_requested_at is not None:
        return current  # asked already: cancelling twice is not an error
    raise types.JobStateError(current, operation)


# --- pausing a queue ---------------------------------------------------------------------------


def _queue_params(
    self: producer.Producer, name: str | None, now: datetime.datetime | None
) -> dict[str, typing.Any]:
    return {
        "queue": self.queue if name is None else checks.check_name(name, "queue"),
        "now": checks.check_time(now, "now"),
    }


async def pause_queue(
    self: producer.Producer, name: str | None = None, *, now: datetime.datetime | None = None
) -> datetime.datetime:
    """Pause queue ``name`` (default: this ``Queue``'s): every worker claims nothing from it
    from its next claim on (a claim already under way still starts its jobs); running jobs
    finish. Returns when it was paused (the first time, if it was paused already)."""
    params = _queue_params(self, name, now)
    rows = await statements.rows(self.pool, "queue_pause", params)
    logger.info("[Queue] Paused queue %s", params["queue"])
    return typing.cast(datetime.datetime, rows[0][0])


async def resume_queue(
    self: producer.Producer, name: str | None = None, *, now: datetime.datetime | None = None
) -> bool:
    """Resume queue ``name`` (default: this ``Queue``'s) and wake its idle workers at once;
    ``False`` when it was not paused."""
    params = _queue_params(self, name, now)
    resumed = bool(await statements.rows(self.pool, "queue_resume", params))
    if resumed:
        logger.info("[Queue] Resumed queue %s", params["queue"])
    return resumed


async def paused_queues(
    self: producer.Producer, name: str | None = None
) -> dict[str, datetime.datetime]:
    """The paused queues (or queue ``name``, if paused), each with when it was paused."""
    params = {"queue": None if name is None else checks.check_name(name, "queue")}
    return dict(await statements.rows(self.pool, "queue_paused_list", params))
