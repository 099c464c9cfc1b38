"""A blocking facade over ``Queue`` for callers without an event loop (e.g. a WSGI app that
enqueues). It runs one ``Queue`` on a private event loop in a daemon thread and hands each
call to it, so the sync and async APIs share every line of queue logic.

    with jobqueue.sync.SyncQueue() as queue:        # $DATABASE_URL
        job = queue.enqueue_job("parseBook", {"bookId": 1, "filePath": "/books/a.epub"})
"""

from __future__ import annotations

import asyncio
import collections.abc
import datetime
import threading
import typing
import uuid

from jobqueue import queue as queue_module
from jobqueue import types

_T = typing.TypeVar("_T")


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

    def enqueue_job(
        self,
        type: str,
        payload: typing.Any = None,
        *,
        run_at: datetime.datetime | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        priority: int = 0,
    ) -> types.Job:
        return self._run(
            self._queue.enqueue_job(
                type,
                payload,
                run_at=run_at,
                max_attempts=max_attempts,
                queue=queue,
                priority=priority,
            )
        )

    def enqueue_jobs(self, jobs: collections.abc.Iterable[types.NewJob]) -> list[types.Job]:
        return self._run(self._queue.enqueue_jobs(list(jobs)))

    def get_job_status(self, job_id: uuid.UUID | str) -> types.Job | None:
        return self._run(self._queue.get_job_status(job_id))

    def get_queue_stats(
        self, *, queue: str | None = None, type: str | None = None
    ) -> types.QueueStats:
        return self._run(self._queue.get_queue_stats(queue=queue, type=type))

    def get_queue_stats_by_type(self, *, queue: str | None = None) -> dict[str, types.QueueStats]:
        return self._run(self._queue.get_queue_stats_by_type(queue=queue))

    def complete_job(self, job_id: uuid.UUID | str, result: typing.Any = None) -> types.Job:
        return self._run(self._queue.complete_job(job_id, result))

    def fail_job(self, job_id: uuid.UUID | str, error: str) -> types.Job:
        return self._run(self._queue.fail_job(job_id, error))

    def cleanup_stale_locks(
        self, threshold_ms: float = queue_module.DEFAULT_STALE_THRESHOLD_MS
    ) -> int:
        return self._run(self._queue.cleanup_stale_locks(threshold_ms))

    def rescue_stale_jobs(
        self, threshold: float, *, queue: str | None = None
    ) -> list[types.RescuedJob]:
        return self._run(self._queue.rescue_stale_jobs(threshold, queue=queue))
