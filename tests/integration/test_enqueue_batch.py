"""Bulk enqueue through COPY (``enqueue_batch``): the same jobs as ``enqueue_jobs`` would
store, whatever the payload holds, all or none, at the speed of COPY."""

from __future__ import annotations

import datetime
import typing

import psycopg
import pytest
import waiting

import jobqueue

UTC = datetime.UTC
AWKWARD = {
    "backslash": "C:\\temp\\new",
    "quotes": 'say "hi"',
    "lines": "one\ntwo\tthree\r",
    "unicode": "书 — ё ✓",
    "nested": [{"a": None, "b": [1.5, True]}],
}


async def test_a_batch_is_stored_in_order_with_the_defaults(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    later = datetime.datetime(2031, 1, 1, tzinfo=UTC)
    new = [
        jobqueue.NewJob("plain"),
        jobqueue.NewJob("awkward\\name", AWKWARD, priority=-5),
        jobqueue.NewJob("other", [1, 2], queue="elsewhere"),
        jobqueue.NewJob("later", {"x": 1}, run_at=later, max_attempts=7),
    ]
    ids = await queue.enqueue_batch(new)
    assert len(set(ids)) == 4
    stored = [await queue.get_job_status(job_id) for job_id in ids]
    assert all(job is not None for job in stored)
    jobs = typing.cast(list[jobqueue.Job], stored)
    assert [job.type for job in jobs] == ["plain", "awkward\\name", "other", "later"]
    assert [job.payload for job in jobs] == [None, AWKWARD, [1, 2], {"x": 1}]
    assert [job.queue for job in jobs] == ["default", "default", "elsewhere", "default"]
    assert [job.priority for job in jobs] == [0, -5, 0, 0]
    assert [job.max_attempts for job in jobs] == [3, 3, 3, 7]
    assert {job.status for job in jobs} == {"pending"}
    assert jobs[3].run_at == later
    cursor = await conn.execute("SELECT now()")
    row = await cursor.fetchone()
    assert row is not None
    assert jobs[0].run_at <= row[0]
    stats = await queue.get_queue_stats()
    assert stats["pending"] == 4


async def test_the_callers_clock_sets_run_at(queue: jobqueue.Queue) -> None:
    at = datetime.datetime(2030, 6, 1, 12, tzinfo=UTC)
    (job_id,) = await queue.enqueue_batch([jobqueue.NewJob("a")], now=at)
    job = await queue.get_job_status(job_id)
    assert job is not None
    assert job.run_at == at


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (jobqueue.NewJob("a\nb"), ValueError, "control character"),
        (jobqueue.NewJob("a", {"x": float("nan")}), ValueError, "not valid JSON"),
        (jobqueue.NewJob("a", priority="high"), TypeError, "priority must be an integer"),  # type: ignore[arg-type]
        (jobqueue.NewJob("a", retries=3), TypeError, "unexpected job option 'retries'"),  # type: ignore[call-arg]
    ],
)
async def test_one_bad_job_enqueues_none(
    queue: jobqueue.Queue, bad: jobqueue.NewJob, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await queue.enqueue_batch([jobqueue.NewJob("good"), bad])
    assert (await queue.get_queue_stats())["pending"] == 0


async def test_a_batch_joins_the_callers_transaction(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    async with conn.transaction() as transaction:
        ids = await queue.enqueue_batch([jobqueue.NewJob("a"), jobqueue.NewJob("b")], conn=conn)
        assert len(ids) == 2
        raise psycopg.Rollback(transaction)  # the application changed its mind
    assert (await queue.get_queue_stats())["pending"] == 0
    assert await queue.enqueue_batch([]) == []


async def test_a_batch_wakes_a_worker(
    queue: jobqueue.Queue, registry: jobqueue.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: object, job: jobqueue.Job) -> str:
        return "ok"

    run_worker(poll_interval=600)  # only the batch's NOTIFY can explain a prompt pickup
    ids = await queue.enqueue_batch(jobqueue.NewJob("quick") for _ in range(50))
    for job_id in ids:
        await waiting.until_status(queue, job_id, "done")
