"""The queue: ``Queue``, and the seed's module-level functions on a default one.

``Queue`` is the producer API (``producer``: enqueue, status, statistics) plus, as methods,
the worker's session (``session``: claim, heartbeat, complete, fail, release), job control
(``control``: list, cancel, retry, delete, pause), concurrency limits (``limits``),
periodic schedules (``schedules``), the stale-job rescue and vacuum health
(``maintenance``), what operators look at (``overview``: queues, workers, counts) and the
audit trail of their actions (``audit``).
Each method is declared once, where its work is done; the class only gathers them. The
module-level functions (``enqueue_job`` and friends, as in the seed) use a default
``Queue`` configured from ``DATABASE_URL``, one per event loop.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import typing
import weakref

from jobqueue import audit, control, limits, maintenance, overview, producer, schedules, session


class Queue(producer.Producer):
    """The queue API over one database. Use as ``async with Queue(url) as queue: ...``, or
    call ``open()``/``close()``; the constructor's arguments are ``producer.Producer``'s."""

    # A function assigned in a class body is a method: these are the session's and the
    # maintenance module's functions, called as queue.claim_jobs(...), signatures and all.
    claim_jobs = session.claim_jobs
    heartbeat = session.heartbeat
    complete_job = session.complete_job
    complete_jobs = session.complete_jobs
    fail_job = session.fail_job
    snooze_job = session.snooze_job
    release_jobs = session.release_jobs
    next_run_at = session.next_run_at
    rescue_stale_jobs = maintenance.rescue_stale_jobs
    cleanup_stale_locks = maintenance.cleanup_stale_locks
    vacuum_health = maintenance.vacuum_health
    list_jobs = control.list_jobs
    cancel_job = control.cancel_job
    cancel_jobs = control.cancel_jobs
    retry_job = control.retry_job
    retry_jobs = control.retry_jobs
    delete_jobs = control.delete_jobs
    pause_queue = control.pause_queue
    resume_queue = control.resume_queue
    paused_queues = control.paused_queues
    limit_concurrency = limits.limit_concurrency
    limit_rate = limits.limit_rate
    remove_limit = limits.remove_limit
    list_limits = limits.list_limits
    held_by_limits = limits.held_by_limits
    queue_has_limits = limits.queue_has_limits
    declare_schedules = schedules.declare_schedules
    run_schedules = schedules.run_schedules
    list_schedules = schedules.list_schedules
    delete_schedule = schedules.delete_schedule
    queue_overview = overview.queue_overview
    list_workers = overview.list_workers
    count_jobs = overview.count_jobs
    announce_worker = overview.announce_worker
    forget_worker = overview.forget_worker
    record_action = audit.record_action
    finish_action = audit.finish_action
    list_actions = audit.list_actions


# --- module-level API, as in the seed ------------------------------------------------------

# Per event loop: the default queue once it is open, and the one task opening it meanwhile.
_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Queue] = weakref.WeakKeyDictionary()
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Queue]] = (
    weakref.WeakKeyDictionary()
)
_default_settings: dict[str, typing.Any] = {}


def configure(database_url: str | None = None, **settings: typing.Any) -> None:
    """Set what the module-level functions connect to (default: ``$DATABASE_URL``).
    ``settings`` are ``Queue`` keyword arguments, e.g. ``queue="books"``."""
    _default_settings.clear()
    _default_settings.update(settings, database_url=database_url)
    _defaults.clear()
    _opening.clear()


async def default_queue() -> Queue:
    """The ``Queue`` behind the module-level functions, opened on first use in this loop.

    Callers that arrive while it opens (a web app's first burst of requests) wait for the
    same opening: a queue is published only once it is open. If opening fails, every
    waiter gets the error and the next call tries again from scratch."""
    loop = asyncio.get_running_loop()
    queue = _defaults.get(loop)
    if queue is not None:
        return queue
    opening = _opening.get(loop)
    if opening is None:
        opening = _opening[loop] = loop.create_task(_open_default(loop, dict(_default_settings)))
    # Shielded: a caller cancelled while it waits does not cancel the others' opening.
    return await asyncio.shield(opening)


async def _open_default(
    loop: asyncio.AbstractEventLoop, queue_settings: dict[str, typing.Any]
) -> Queue:
    try:
        queue = Queue(**queue_settings)
        try:
            await queue.open()
        except BaseException:
            await queue.close()  # a pool half opened must not linger
            raise
    finally:
        _opening.pop(loop, None)
    _defaults[loop] = queue
    return queue


async def close_default_queue() -> None:
    """Close this loop's default queue (waiting for one still opening); the next call of a
    module-level function opens a new one."""
    loop = asyncio.get_running_loop()
    opening = _opening.get(loop)
    if opening is not None:
        await asyncio.wait({opening})
    queue = _defaults.pop(loop, None)
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
enqueue_batch = _on_default_queue(Queue.enqueue_batch)
get_job_status = _on_default_queue(Queue.get_job_status)
get_queue_stats = _on_default_queue(Queue.get_queue_stats)
complete_job = _on_default_queue(Queue.complete_job)
fail_job = _on_default_queue(Queue.fail_job)
cleanup_stale_locks = _on_default_queue(Queue.cleanup_stale_locks)
# Job control, likewise.
list_jobs = _on_default_queue(Queue.list_jobs)
cancel_job = _on_default_queue(Queue.cancel_job)
cancel_jobs = _on_default_queue(Queue.cancel_jobs)
retry_job = _on_default_queue(Queue.retry_job)
retry_jobs = _on_default_queue(Queue.retry_jobs)
delete_jobs = _on_default_queue(Queue.delete_jobs)
pause_queue = _on_default_queue(Queue.pause_queue)
resume_queue = _on_default_queue(Queue.resume_queue)
paused_queues = _on_default_queue(Queue.paused_queues)
limit_concurrency = _on_default_queue(Queue.limit_concurrency)
limit_rate = _on_default_queue(Queue.limit_rate)
remove_limit = _on_default_queue(Queue.remove_limit)
list_limits = _on_default_queue(Queue.list_limits)
list_schedules = _on_default_queue(Queue.list_schedules)
