"""Claiming while vacuum is held back (issue 24): a claim that starts at the place of the
last one reads past the dead index entries a long transaction keeps, and a worker whose
claims turned slow claims that way without losing sight of any job."""

from __future__ import annotations

import datetime
import typing

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import runner, sql, types
from jobqueue import worker as worker_module

UTC = datetime.UTC
T0 = datetime.datetime(2030, 1, 1, tzinfo=UTC)
PAST = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


async def test_a_claim_after_a_place_takes_later_jobs_and_higher_priorities_only(
    queue: jobqueue.Queue,
) -> None:
    jobs = {
        name: (await queue.enqueue_job("t", None, run_at=at(due), priority=priority, now=at(0)))
        for name, due, priority in [
            ("before the place", 5, 0),
            ("at the place", 10, 0),
            ("after the place", 20, 0),
            ("higher, earlier", 1, 3),
            ("lower, later", 30, -1),
            ("not due", 100, 0),
        ]
    }
    claimed = await queue.claim_jobs("w", limit=10, after=(0, at(10)), now=at(50))
    assert {job.id for job in claimed} == {
        jobs[name].id for name in ("at the place", "after the place", "higher, earlier")
    }
    # The rest are there for a full claim, in claim order.
    rest = await queue.claim_jobs("w", limit=10, now=at(50))
    assert [job.id for job in rest] == [jobs["before the place"].id, jobs["lower, later"].id]


async def test_a_claim_after_a_place_keeps_to_its_limit(queue: jobqueue.Queue) -> None:
    await queue.enqueue_jobs(jobqueue.NewJob("t", priority=p % 2) for p in range(10))
    claimed = await queue.claim_jobs("w", limit=4, after=(0, PAST))
    assert len(claimed) == 4
    assert [job.priority for job in claimed].count(1) == 4  # the higher priority first
    claimed = await queue.claim_jobs("w", limit=4, after=(0, PAST))
    assert sorted(job.priority for job in claimed) == [0, 0, 0, 1]


async def entries_read(
    conn: psycopg.AsyncConnection[typing.Any], name: str, params: dict[str, typing.Any]
) -> int:
    """How many entries of jobs_ready_idx the query reads (dead ones too), run and rolled
    back: the index's idx_tup_read before and after, its statistics flushed in between.
    (A plan's buffer count would not tell: a scan reading many dead rows of one heap page
    counts that page once.)"""

    async def tuples_read() -> int:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.commit()
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        cursor = await conn.execute(
            "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'jobs_ready_idx'"
        )
        row = await cursor.fetchone()
        await conn.commit()
        assert row is not None
        return int(row[0])

    before = await tuples_read()
    await conn.execute(sql.query(name), params)
    await conn.rollback()
    return await tuples_read() - before


async def test_a_claim_after_a_place_reads_past_the_dead_entries_a_long_transaction_keeps(
    queue: jobqueue.Queue, database_url: str
) -> None:
    """10,000 jobs claimed and done while a REPEATABLE READ transaction is open: their
    pending versions stay in jobs_ready_idx, at its head, and a full claim reads them all
    before it reaches the next job; a claim after the last place does not."""
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await holder.execute("SELECT count(*) FROM jobs")  # the snapshot is taken
        old = datetime.datetime.now(UTC) - datetime.timedelta(minutes=10)
        await queue.enqueue_batch([jobqueue.NewJob("t", run_at=old)] * 10_000)
        while batch := await queue.claim_jobs("w", limit=1000):
            await queue.complete_jobs("w", [(job.id, None) for job in batch])
        await queue.enqueue_jobs([jobqueue.NewJob("t")] * 10)
        params = {
            "queue": "default",
            "types": None,
            "limit": 10,
            "worker_id": "w",
            "now": None,
        }
        since = datetime.datetime.now(UTC) - worker_module.CLAIM_MARGIN
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            full = await entries_read(conn, "job_claim", params)
            after = await entries_read(
                conn, "job_claim_after", params | {"after_priority": 0, "after_run_at": since}
            )
        await holder.rollback()
    assert full >= 10_000
    assert after < 100


async def test_a_worker_whose_claims_are_slow_still_runs_every_job(
    queue: jobqueue.Queue,
    registry: runner.Registry,
    run_worker: typing.Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every claim counts as slow here (``slow_claim=0``): the worker claims after its
    last place, and its full claims, every FULL_CLAIM_INTERVAL, find what lies before the
    place: a job put back in line long ago and a job of a lower priority."""
    monkeypatch.setattr(worker_module, "FULL_CLAIM_INTERVAL", 0.2)

    @jobqueue.handler("t", registry=registry)
    async def handle(payload: object, job: types.Job) -> None:
        return None

    first = await queue.enqueue_jobs(jobqueue.NewJob("t") for _ in range(20))
    run_worker(concurrency=4, poll_interval=5.0, slow_claim=0.0)
    for job in first:
        await waiting.until_status(queue, job.id, "done")
    assert "claiming after the last claim's place" in caplog.text
    later = [
        await queue.enqueue_job("t", None, priority=-1),
        await queue.enqueue_job(
            "t", None, run_at=datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
        ),
        await queue.enqueue_job("t", None, priority=2),
        await queue.enqueue_job("t", None),
    ]
    for job in later:
        done = await waiting.until_status(queue, job.id, "done")
        assert done.attempts == 1


async def test_a_claim_after_a_place_that_finds_nothing_moves_the_place_on(
    queue: jobqueue.Queue,
) -> None:
    """An idle worker claiming after its place would otherwise read, at every wake-up,
    every entry claimed by others since its last job; what it moved past is the full
    claim's to find."""
    clock = [at(0)]
    claimer = worker_module.Claimer(
        queue, "w", queue_name="default", types_=None, clock=lambda: clock[0], slow_claim=0.0
    )
    assert await claimer.claim(10) == []  # full, and "slow": from now on after a place
    assert claimer.after == (0, at(0) - worker_module.CLAIM_MARGIN)
    clock[0] = at(60)
    assert await claimer.claim(10) == []
    assert claimer.after == (0, at(60) - worker_module.CLAIM_MARGIN)
    behind = await queue.enqueue_job("t", None, run_at=at(30), now=at(30))
    clock[0] = at(61)
    assert await claimer.claim(10) == []  # before the place: not this claim's to find
    claimer.full_claim_due = 0.0  # the full claim's turn
    assert [job.id for job in await claimer.claim(10)] == [behind.id]
