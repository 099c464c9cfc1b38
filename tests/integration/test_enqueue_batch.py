"""Bulk enqueue through COPY (``enqueue_batch``): the same jobs as ``enqueue_jobs`` would
store, whatever the payload holds, all or none, at the speed of COPY."""

from __future__ import annotations

import concurrent.futures
import datetime
import itertools
import os
import typing
import uuid

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import producer

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
    # Found after whole chunks were already sent: those are rolled back too.
    with pytest.raises(error, match=message):
        await queue.enqueue_batch([*[jobqueue.NewJob("good")] * 1000, bad])
    assert (await queue.get_queue_stats())["pending"] == 0
    assert await queue.enqueue_batch([jobqueue.NewJob("after")]) != []  # the pool is fine


def test_ids_are_time_ordered_and_unique_across_threads_and_forks() -> None:
    """Job ids are laid out as UUID version 7: made later, sorted later (within a thread;
    the sequence field orders ids of the same millisecond), never repeated."""
    ids = [producer.new_job_id() for _ in range(2000)]
    assert all(job_id.version == 7 and job_id.variant == uuid.RFC_4122 for job_id in ids)
    millis = [job_id.int >> 80 for job_id in ids]
    assert millis == sorted(millis)
    sequences = [(job_id.int >> 64) & 0xFFF for job_id in ids]
    assert all(b == (a + 1) & 0xFFF for a, b in itertools.pairwise(sequences))
    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        made = list(threads.map(lambda _: [producer.new_job_id() for _ in range(5000)], range(4)))
    every = [job_id for ids_of_thread in made for job_id in ids_of_thread]
    assert len(set(every)) == len(every)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child's ids next to the parent's made at the same moment
        os.write(write, b"".join(producer.new_job_id().bytes for _ in range(500)))
        os._exit(0)
    os.close(write)
    parent = {producer.new_job_id().bytes for _ in range(500)}
    with os.fdopen(read, "rb") as from_child:
        child_bytes = from_child.read()
    os.waitpid(child, 0)
    children = {child_bytes[i : i + 16] for i in range(0, len(child_bytes), 16)}
    assert len(children) == 500
    assert not parent & children


async def test_a_bulk_enqueues_ids_are_time_ordered_too(queue: jobqueue.Queue) -> None:
    """A bulk enqueue makes its ids a chunk at a time: they keep the layout and the order."""
    ids = await queue.enqueue_batch([jobqueue.NewJob("a")] * 700)
    assert len(set(ids)) == 700
    assert all(job_id.version == 7 and job_id.variant == uuid.RFC_4122 for job_id in ids)
    millis = [job_id.int >> 80 for job_id in ids]
    assert millis == sorted(millis)
    sequences = [(job_id.int >> 64) & 0xFFF for job_id in ids]
    assert all(b == (a + 1) & 0xFFF for a, b in itertools.pairwise(sequences))


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
