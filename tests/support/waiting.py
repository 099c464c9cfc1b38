"""Waiting on conditions with deadlines: how the tests synchronise, never by fixed sleeps."""

from __future__ import annotations

import asyncio
import collections.abc
import time
import typing
import uuid

import jobqueue

_T = typing.TypeVar("_T")


async def eventually(
    check: collections.abc.Callable[[], collections.abc.Awaitable[_T]],
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> _T:
    """Await ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


async def until(
    check: collections.abc.Callable[[], object], *, timeout: float = 15.0, what: str = "condition"
) -> None:
    """``eventually`` for a condition the test can read without awaiting (a worker's state)."""

    async def probe() -> object:
        return check()

    await eventually(probe, timeout=timeout, what=what)


def eventually_sync(
    check: collections.abc.Callable[[], _T],
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> _T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s (last: {value!r})")
        time.sleep(interval)


async def job_status(queue: jobqueue.Queue, job_id: uuid.UUID) -> jobqueue.Job:
    """The job, which must exist."""
    job = await queue.get_job_status(job_id)
    assert job is not None, f"job {job_id} is gone"
    return job


async def until_status(
    queue: jobqueue.Queue, job_id: uuid.UUID, *statuses: str, timeout: float = 15.0
) -> jobqueue.Job:
    """The job, once its status is one of ``statuses``."""

    async def check() -> jobqueue.Job | None:
        job = await job_status(queue, job_id)
        return job if job.status in statuses else None

    found = await eventually(check, timeout=timeout, what=f"job {job_id} {statuses}")
    assert found is not None
    return found
