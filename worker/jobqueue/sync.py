"""A blocking facade over ``Queue`` for callers without an event loop (e.g. a WSGI app that
enqueues). It runs one ``Queue`` on a private event loop in a daemon thread and hands each
call to it, so the sync and async APIs share every line of queue logic.

    with jobqueue.sync.SyncQueue() as queue:        # $DATABASE_URL
        job = queue.enqueue_job("parseBook", {"bookId": 1, "filePath": "/books/a.epub"})
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import threading
import typing

from jobqueue import queue as queue_module

_T = typing.TypeVar("_T")


_P = typing.ParamSpec("_P")


def _blocking(
    method: collections.abc.Callable[
        typing.Concatenate[queue_module.Queue, _P],
        collections.abc.Coroutine[typing.Any, typing.Any, _T],
    ],
) -> collections.abc.Callable[typing.Concatenate[SyncQueue, _P], _T]:
    """``Queue.method`` as a blocking ``SyncQueue`` method with the same signature."""

    @functools.wraps(method)
    def call(self: SyncQueue, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return self._run(method(self._queue, *args, **kwargs))

    return call


class SyncQueue:
    """The ``Queue`` API, blocking. Thread-safe: calls from many threads share one pool."""

    def __init__(self, database_url: str | None = None, **settings: typing.Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jobqueue-sync", daemon=True
        )
        self._thread.start()
        try:
            self._queue = self._run(self._open(database_url, settings))
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _open(
        database_url: str | None, settings: dict[str, typing.Any]
    ) -> queue_module.Queue:
        return await queue_module.Queue(database_url, **settings).open()

    def _run(self, coroutine: collections.abc.Coroutine[typing.Any, typing.Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._queue.close())
        self._stop_loop()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The Queue's methods, blocking: one line each, so the two APIs cannot drift apart.
    enqueue_job = _blocking(queue_module.Queue.enqueue_job)
    enqueue_jobs = _blocking(queue_module.Queue.enqueue_jobs)
    enqueue_batch = _blocking(queue_module.Queue.enqueue_batch)
    get_job_status = _blocking(queue_module.Queue.get_job_status)
    get_queue_stats = _blocking(queue_module.Queue.get_queue_stats)
    get_queue_stats_by_type = _blocking(queue_module.Queue.get_queue_stats_by_type)
    complete_job = _blocking(queue_module.Queue.complete_job)
    fail_job = _blocking(queue_module.Queue.fail_job)
    cleanup_stale_locks = _blocking(queue_module.Queue.cleanup_stale_locks)
    rescue_stale_jobs = _blocking(queue_module.Queue.rescue_stale_jobs)
    vacuum_health = _blocking(queue_module.Queue.vacuum_health)
    list_jobs = _blocking(queue_module.Queue.list_jobs)
    cancel_job = _blocking(queue_module.Queue.cancel_job)
    cancel_jobs = _blocking(queue_module.Queue.cancel_jobs)
    retry_job = _blocking(queue_module.Queue.retry_job)
    retry_jobs = _blocking(queue_module.Queue.retry_jobs)
    delete_jobs = _blocking(queue_module.Queue.delete_jobs)
    pause_queue = _blocking(queue_module.Queue.pause_queue)
    resume_queue = _blocking(queue_module.Queue.resume_queue)
    paused_queues = _blocking(queue_module.Queue.paused_queues)
    limit_concurrency = _blocking(queue_module.Queue.limit_concurrency)
    limit_rate = _blocking(queue_module.Queue.limit_rate)
    remove_limit = _blocking(queue_module.Queue.remove_limit)
    list_limits = _blocking(queue_module.Queue.list_limits)
    held_by_limits = _blocking(queue_module.Queue.held_by_limits)
    list_schedules = _blocking(queue_module.Queue.list_schedules)
    delete_schedule = _blocking(queue_module.Queue.delete_schedule)
    declare_schedules = _blocking(queue_module.Queue.declare_schedules)
    queue_overview = _blocking(queue_module.Queue.queue_overview)
    list_workers = _blocking(queue_module.Queue.list_workers)
    count_jobs = _blocking(queue_module.Queue.count_jobs)
    record_action = _blocking(queue_module.Queue.record_action)
    finish_action = _blocking(queue_module.Queue.finish_action)
    list_actions = _blocking(queue_module.Queue.list_actions)
