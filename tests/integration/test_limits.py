"""Concurrency limits and turns between keys (migration 0011): what a claim takes under the
limits of a queue, a job type and concurrency keys, in one process; the chaos suite
checks them across worker processes under faults."""

from __future__ import annotations

import asyncio
import collections
import datetime
import typing

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import runner

pytestmark = pytest.mark.asyncio


def keys_of(jobs: list[jobqueue.Job]) -> collections.Counter[str | None]:
    return collections.Counter(job.concurrency_key for job in jobs)


async def claim(
    queue: jobqueue.Queue, limit: int, after_key: str | None = None
) -> list[jobqueue.Job]:
    return await queue.claim_jobs("w", limit=limit, limited=True, after_key=after_key)


async def enqueue(
    queue: jobqueue.Queue, key: str | None, count: int, job_type: str = "t", **options: typing.Any
) -> None:
    await queue.enqueue_jobs(
        [jobqueue.NewJob(job_type, concurrency_key=key, **options) for _ in range(count)]
    )


async def test_limits_are_set_listed_and_removed(queue: jobqueue.Queue) -> None:
    assert await queue.list_limits() == []
    every = await queue.limit_concurrency(2, per_key=True)
    assert (every.queue, every.scope, every.name, every.concurrency) == ("default", "key", "", 2)
    await queue.limit_concurrency(5, key="big", queue="other")
    await queue.limit_concurrency(1, type="callApi")
    await queue.limit_concurrency(10)
    await queue.limit_concurrency(3, per_key=True)  # changed, not added
    limits = await queue.list_limits()
    listed = [(lim.queue, lim.scope, lim.name, lim.concurrency) for lim in limits]
    assert listed == [
        ("default", "key", "", 3),
        ("default", "queue", "", 10),
        ("default", "type", "callApi", 1),
        ("other", "key", "big", 5),
    ]
    assert [lim.name for lim in await queue.list_limits("other")] == ["big"]
    assert await queue.remove_limit(type="callApi") is True
    assert await queue.remove_limit(type="callApi") is False
    with pytest.raises(ValueError, match="one scope"):
        await queue.limit_concurrency(1, type="a", key="b")
    with pytest.raises(ValueError, match="concurrency"):
        await queue.limit_concurrency(0)


async def test_a_queue_is_marked_limited_however_its_limits_are_written(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    async def limited() -> list[tuple[str, bool]]:
        cursor = await conn.execute("SELECT name, limited FROM job_queues ORDER BY name")
        return await cursor.fetchall()

    await conn.execute("INSERT INTO job_limits (queue, scope, name) VALUES ('raw', 'key', '')")
    await queue.limit_concurrency(4)
    assert await limited() == [("default", True), ("raw", True)]
    await conn.execute("UPDATE job_limits SET queue = 'moved' WHERE queue = 'raw'")
    assert await limited() == [("default", True), ("moved", True), ("raw", False)]
    await queue.remove_limit()
    await conn.execute("DELETE FROM job_limits")
    assert await limited() == [("default", False), ("moved", False), ("raw", False)]


async def test_a_key_runs_no_more_than_its_limit(queue: jobqueue.Queue) -> None:
    await queue.limit_concurrency(2, per_key=True)
    await queue.limit_concurrency(1, key="small")
    await enqueue(queue, "a", 5)
    await enqueue(queue, "b", 5)
    await enqueue(queue, "small", 5)
    await enqueue(queue, None, 3)
    first = await claim(queue, 100)
    assert keys_of(first) == {"a": 2, "b": 2, "small": 1, None: 3}
    assert await claim(queue, 100) == []
    done = next(job for job in first if job.concurrency_key == "a")
    await queue.complete_job(done.id, None, worker_id="w")
    assert keys_of(await claim(queue, 100)) == {"a": 1}
    # Raised at run time: the next claim takes more.
    await queue.limit_concurrency(3, per_key=True)
    assert keys_of(await claim(queue, 100)) == {"a": 1, "b": 1}


async def test_type_and_queue_limits(queue: jobqueue.Queue) -> None:
    await queue.limit_concurrency(2, type="callApi")
    await enqueue(queue, None, 5, "callApi")
    await enqueue(queue, "k", 5, "callApi")
    await enqueue(queue, None, 5, "other")
    claimed = await claim(queue, 100)
    assert collections.Counter(job.type for job in claimed) == {"callApi": 2, "other": 5}
    await queue.limit_concurrency(8)  # the whole queue: 7 run already
    assert len(await claim(queue, 100)) == 0  # callApi is full, others gone
    await enqueue(queue, None, 5, "more")
    assert len(await claim(queue, 100)) == 1


async def test_keys_take_turns_so_a_backlog_does_not_starve_a_small_key(
    queue: jobqueue.Queue,
) -> None:
    await queue.limit_concurrency(None, per_key=True)  # no limit: turns only
    await enqueue(queue, "big", 500)
    await enqueue(queue, "small", 5, priority=0)
    claimed = await claim(queue, 10)
    assert keys_of(claimed) == {"big": 5, "small": 5}


async def test_turns_go_round_the_keys_from_the_last_one_served(queue: jobqueue.Queue) -> None:
    await queue.limit_concurrency(1, per_key=True)
    keys = [f"k{n:02}" for n in range(25)]
    for key in keys:
        await enqueue(queue, key, 2)
    first = await claim(queue, 10)
    assert sorted(keys_of(first)) == keys[:10]
    second = await claim(queue, 10, after_key="k09")
    assert sorted(keys_of(second)) == keys[10:20]
    # Around: after k19, the last five, then the first keys again (those have room no more).
    for job in first:
        await queue.complete_job(job.id, None, worker_id="w")
    third = await claim(queue, 10, after_key="k19")
    assert sorted(keys_of(third)) == sorted(keys[20:] + keys[:5])


async def test_a_paused_limited_queue_gives_nothing(queue: jobqueue.Queue) -> None:
    await queue.limit_concurrency(2, per_key=True)
    await enqueue(queue, "a", 3)
    await queue.pause_queue()
    assert await claim(queue, 10) == []
    await queue.resume_queue()
    assert len(await claim(queue, 10)) == 2


async def test_the_claims_in_order_give_nothing_in_a_limited_queue(queue: jobqueue.Queue) -> None:
    await enqueue(queue, "a", 3)
    await queue.limit_concurrency(1, per_key=True)
    assert await queue.queue_has_limits() is True
    assert await queue.claim_jobs("w", limit=10) == []
    now = datetime.datetime.now(datetime.UTC)
    assert await queue.claim_jobs("w", limit=10, after=(0, now - datetime.timedelta(1))) == []
    assert len(await claim(queue, 10)) == 1
    await queue.remove_limit(per_key=True)
    assert await queue.queue_has_limits() is False
    assert len(await queue.claim_jobs("w", limit=10)) == 2


async def test_a_worker_finds_the_limits_that_came_and_claims_within_them(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    running: collections.Counter[str] = collections.Counter()
    most: collections.Counter[str] = collections.Counter()
    release = asyncio.Event()

    @jobqueue.handler("held", registry=registry)
    async def held(payload: object, job: jobqueue.Job) -> None:
        key = job.concurrency_key or ""
        running[key] += 1
        most[key] = max(most[key], running[key])
        await release.wait()
        running[key] -= 1

    worker = run_worker(concurrency=20, poll_interval=600)
    await waiting.until(lambda: worker.listening, what="worker listening")
    await queue.limit_concurrency(2, per_key=True)
    await enqueue(queue, "a", 5, "held")
    await enqueue(queue, "b", 5, "held")
    await waiting.until(lambda: sum(running.values()) == 4, what="four running")
    release.set()
    await waiting.eventually(lambda: _done(queue, 10), what="every job done", timeout=30)
    assert most == {"a": 2, "b": 2}


async def _done(queue: jobqueue.Queue, count: int) -> bool:
    return (await queue.get_queue_stats())["done"] == count


async def test_the_jobs_limits_hold_back_are_counted(queue: jobqueue.Queue) -> None:
    assert await queue.held_by_limits() == 0
    await enqueue(queue, "a", 5)
    await enqueue(queue, "b", 1)
    await enqueue(queue, None, 2)
    assert await queue.held_by_limits() == 0  # no limits
    await queue.limit_concurrency(2, per_key=True)
    assert await queue.held_by_limits() == 3  # a: 5 ready, room for 2
    await claim(queue, 1)  # an "a" runs (the first line's first job)
    assert await queue.held_by_limits() == 3  # a: 4 ready, room for 1
    await queue.limit_concurrency(None, key="a")  # a: no limit of its own... the default 2
    assert await queue.held_by_limits() == 3
    await queue.limit_concurrency(6)  # the queue: 1 running, 7 ready, room for 5
    assert await queue.held_by_limits() == 3
    await queue.limit_concurrency(3)  # room for 2 of the 5 the keys would let run
    assert await queue.held_by_limits() == 5


async def claim_at(queue: jobqueue.Queue, limit: int, at: datetime.datetime) -> list[jobqueue.Job]:
    return await queue.claim_jobs("w", limit=limit, limited=True, now=at)


async def test_a_key_starts_no_more_than_its_rate(queue: jobqueue.Queue) -> None:
    limit = await queue.limit_rate(5, per=1.0, per_key=True)
    assert (limit.rate, limit.per, limit.burst, limit.concurrency) == (5, 1.0, None, None)
    await enqueue(queue, "a", 20)
    await enqueue(queue, "b", 2)
    t0 = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    assert keys_of(await claim_at(queue, 100, t0)) == {"a": 5, "b": 2}  # a full bucket
    assert await claim_at(queue, 100, t0) == []
    step = datetime.timedelta(seconds=0.4)
    assert keys_of(await claim_at(queue, 100, t0 + step)) == {"a": 2}  # 0.4 s at 5/s
    assert keys_of(await claim_at(queue, 100, t0 + 20 * step)) == {"a": 5}  # a burst at most
    # A key's own rate, with a burst of its own, and a concurrency limit for every key.
    for job in await queue.list_jobs(jobqueue.JobFilter(statuses=["running"])):
        await queue.complete_job(job.id, None)
    await queue.limit_rate(1, per=10.0, burst=3, key="a")
    await queue.limit_concurrency(2, per_key=True)
    await enqueue(queue, "b", 3)
    # a: its bucket, empty at t0 + 8 s, refills at 1 in 10 s; b: 2 at once (5 tokens).
    assert keys_of(await claim_at(queue, 100, t0 + 60 * step)) == {"a": 1, "b": 2}


async def test_type_and_queue_rates(queue: jobqueue.Queue) -> None:
    await queue.limit_rate(2, per=1.0, type="callApi")
    await queue.limit_rate(3, per=1.0)
    await enqueue(queue, None, 5, "callApi")
    await enqueue(queue, None, 5, "other")
    t0 = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    first = await claim_at(queue, 100, t0)
    assert len(first) == 3
    assert sum(job.type == "callApi" for job in first) <= 2
    assert await claim_at(queue, 100, t0) == []
    assert len(await claim_at(queue, 100, t0 + datetime.timedelta(seconds=1))) == 3
    await queue.limit_rate(None)  # the queue's rate gone; the type's stays, spent
    rest = await claim_at(queue, 100, t0 + datetime.timedelta(seconds=1))
    assert collections.Counter(job.type for job in rest) == {"other": 3}


async def test_a_worker_starts_a_rate_limited_key_no_faster_than_its_rate(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    rate, burst = 10, 2
    claimed_at: list[datetime.datetime] = []

    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: object, job: jobqueue.Job) -> None:
        assert job.locked_at is not None
        claimed_at.append(job.locked_at)  # the claim's time: the one its tokens are taken at

    await queue.limit_rate(rate, per=1.0, burst=burst, per_key=True)
    await enqueue(queue, "a", 12, "quick")
    run_worker(concurrency=20, poll_interval=600)
    await waiting.eventually(lambda: _done(queue, 12), what="every job done", timeout=30)
    starts = sorted(claimed_at)
    for first in range(len(starts)):
        for last in range(first, len(starts)):
            seconds = (starts[last] - starts[first]).total_seconds()
            assert last - first + 1 <= burst + rate * seconds + 1e-6, (first, last, seconds)
    assert (starts[-1] - starts[0]).total_seconds() >= (12 - burst) / rate - 1e-6
