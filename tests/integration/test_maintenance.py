"""The maintenance API the operator uses: queue depth, retention, migrate() (issue 9, part 4)."""

from __future__ import annotations

import asyncio
import datetime
import typing

import psycopg
import pytest
from test_cli import run

import jobqueue

UTC = datetime.UTC
T0 = datetime.datetime(2030, 1, 1, 12, tzinfo=UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


async def test_queue_depth_splits_the_backlog(queue: jobqueue.Queue) -> None:
    await queue.enqueue_jobs((jobqueue.NewJob("a") for _ in range(3)), now=at(-100))  # ready
    await queue.enqueue_job("a", run_at=at(30))  # delayed, due soon
    await queue.enqueue_job("a", run_at=at(3600))  # delayed, not soon
    await queue.enqueue_job("b", queue="other", run_at=at(10))
    claimed = await queue.claim_jobs("w", limit=2, now=at(0))
    assert len(claimed) == 2
    await queue.complete_job(claimed[0].id, None)
    await queue.fail_job(claimed[1].id, "x", final=True)
    rows = await jobqueue.queue_depth(queue, now=at(0), due_within=60)
    by_key = {(row.queue, row.type): row for row in rows}
    a = by_key[("default", "a")]
    assert (a.ready, a.delayed, a.due_soon, a.running, a.done, a.failed) == (1, 2, 1, 0, 1, 1)
    assert a.oldest_ready_age == pytest.approx(100)
    other = by_key[("other", "b")]
    assert (other.ready, other.delayed, other.running) == (0, 1, 0)
    assert other.oldest_ready_age is None
    only = await jobqueue.queue_depth(queue, name="other", now=at(0))
    assert [(row.queue, row.type) for row in only] == [("other", "b")]


async def test_queue_depth_counts_running(queue: jobqueue.Queue) -> None:
    await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(4))
    await queue.claim_jobs("w", limit=3)
    (row,) = await jobqueue.queue_depth(queue)
    assert (row.ready, row.running, row.pending) == (1, 3, 1)


async def test_prune_deletes_old_finished_jobs_in_batches_and_keeps_counts_exact(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    jobs = await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(25))
    for job in jobs[:20]:
        await queue.complete_job(job.id, None, now=at(0))
    await queue.fail_job(jobs[20].id, "x", final=True, now=at(0))
    await queue.complete_job(jobs[21].id, None, now=at(3000))  # too recent
    deleted = await jobqueue.prune_finished_jobs(
        queue, 3600, batch_size=7, max_batches=2, now=at(3601)
    )
    assert deleted == 14
    deleted += await jobqueue.prune_finished_jobs(queue, 3600, batch_size=7, now=at(3601))
    assert deleted == 21
    stats = await queue.get_queue_stats()
    assert stats == {"pending": 3, "running": 0, "failed": 0, "done": 1, "cancelled": 0}
    cursor = await conn.execute("SELECT count(*) FROM jobs")
    assert await cursor.fetchone() == (4,)


async def test_concurrent_pruners_delete_each_job_once(queue: jobqueue.Queue) -> None:
    jobs = await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(300))
    await queue.complete_jobs("nobody", [])  # no-op, keeps the API honest
    for job in jobs:
        await queue.complete_job(job.id, None, now=at(0))
    counts = await asyncio.gather(
        *(jobqueue.prune_finished_jobs(queue, 60, batch_size=20, now=at(120)) for _ in range(4))
    )
    assert sum(counts) == 300
    assert (await queue.get_queue_stats())["done"] == 0


async def test_prune_refuses_nonsense(queue: jobqueue.Queue) -> None:
    with pytest.raises(ValueError, match="older_than"):
        await jobqueue.prune_finished_jobs(queue, 0)
    with pytest.raises(ValueError, match="batch_size"):
        await jobqueue.prune_finished_jobs(queue, 60, batch_size=0)


async def test_prune_keeps_failed_and_done_apart(queue: jobqueue.Queue) -> None:
    """Retention per status (the operator keeps failed jobs longer than done ones)."""
    jobs = await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(4))
    for job in jobs[:2]:
        await queue.complete_job(job.id, None, now=at(0))
    for job in jobs[2:]:
        await queue.fail_job(job.id, "x", final=True, now=at(0))
    assert await jobqueue.prune_finished_jobs(queue, 60, statuses=["done"], now=at(120)) == 2
    assert (await queue.get_queue_stats())["failed"] == 2
    assert await jobqueue.prune_finished_jobs(queue, 60, statuses=["failed"], now=at(120)) == 2
    with pytest.raises(ValueError, match="statuses must be among done, failed"):
        await jobqueue.prune_finished_jobs(queue, 60, statuses=["running"])


async def test_running_by_worker(queue: jobqueue.Queue) -> None:
    await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(5))
    await queue.enqueue_job("a", queue="other")
    await queue.claim_jobs("pod-a", limit=3)
    await queue.claim_jobs("pod-b", limit=1)
    await queue.claim_jobs("pod-c", queue="other", limit=1)
    assert await jobqueue.running_by_worker(queue, name="default") == {"pod-a": 3, "pod-b": 1}
    assert await jobqueue.running_by_worker(queue) == {"pod-a": 3, "pod-b": 1, "pod-c": 1}


async def test_migrate_from_python(empty_database_url: str) -> None:
    applied = await jobqueue.migrate(empty_database_url)
    assert [migration.label for migration in applied][:2] == [
        "0001_jobs",
        "0002_queue_claiming_and_counts",
    ]
    assert await jobqueue.migrate(empty_database_url) == []


def test_depth_and_prune_from_the_shell(database_url: str) -> None:
    with jobqueue.SyncQueue(database_url) as queue:
        done = queue.enqueue_job("a")
        queue.enqueue_job("a")
        queue.complete_job(done.id, None)
    table = run("depth", database_url=database_url).stdout.splitlines()
    assert table[0].split() == [
        "QUEUE",
        "TYPE",
        "READY",
        "DELAYED",
        "DUE",
        "SOON",
        "RUNNING",
        "FAILED",
        "DONE",
        "OLDEST",
    ]
    assert table[1].split()[:8] == ["default", "a", "1", "0", "0", "0", "0", "1"]
    pruned = run("db", "prune", "--older-than", "1d", database_url=database_url)
    assert pruned.stdout.strip() == "deleted 0 finished jobs"
