"""Periodic schedules (issue 21, item 5) on a real PostgreSQL: each tick enqueued once by
however many schedulers, with moved clocks, restarts, missed ticks and changed
definitions; and real workers running the schedules registered in code."""

from __future__ import annotations

import asyncio
import collections
import datetime
import itertools
import typing

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import runner

UTC = datetime.UTC
T0 = datetime.datetime(2030, 1, 1, tzinfo=UTC)  # a whole minute, hour and day


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


async def tick_jobs(
    conn: psycopg.AsyncConnection[typing.Any],
) -> list[tuple[str, datetime.datetime]]:
    cursor = await conn.execute(
        "SELECT unique_key, run_at FROM jobs WHERE unique_key LIKE 'schedule:%' ORDER BY run_at"
    )
    return list(await cursor.fetchall())


async def test_a_schedule_enqueues_each_tick_once_as_it_falls_due(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    report = jobqueue.Schedule(
        "report", "makeReport", {"kind": "daily"}, every=60, queue="reports", priority=5
    )
    await queue.declare_schedules([report])
    # The first look only works out the next tick: a new schedule does not fire for the past.
    first = await queue.run_schedules([report], now=at(1))
    assert first.enqueued == []
    assert first.next_run_at == at(60)
    assert first.declared
    assert (await queue.run_schedules([report], now=at(59))).enqueued == []
    due = await queue.run_schedules([report], now=at(60.5))
    (job,) = due.enqueued
    assert (job.type, job.payload, job.queue, job.priority) == (
        "makeReport",
        {"kind": "daily"},
        "reports",
        5,
    )
    assert job.unique_key == "schedule:report@2030-01-01T00:01:00Z"
    assert job.run_at == at(60)
    assert job.unique_period_start == at(60)
    assert due.next_run_at == at(120)
    # Asked again in the same tick: nothing more.
    assert (await queue.run_schedules([report], now=at(61))).enqueued == []
    (state,) = await queue.list_schedules()
    assert (state.name, state.timing, state.next_run_at, state.last_run_at) == (
        "report",
        "every 60s",
        at(120),
        at(60),
    )
    assert [key for key, _ in await tick_jobs(conn)] == [job.unique_key]


async def test_missed_ticks_are_skipped_or_caught_up_to_the_limit(queue: jobqueue.Queue) -> None:
    skip = jobqueue.Schedule("skip", "t", every=60)
    catch_up = jobqueue.Schedule("catch-up", "t", every=60, catch_up=3)
    both = [skip, catch_up]
    await queue.declare_schedules(both)
    await queue.run_schedules(both, now=at(1))
    # Ten minutes with no scheduler: ticks 1 to 10 were missed.
    late = await queue.run_schedules(both, now=at(10 * 60 + 5))
    by_schedule = collections.defaultdict(list)
    for job in late.enqueued:
        assert job.unique_key is not None
        by_schedule[job.unique_key.split("@")[0]].append(job.run_at)
    assert by_schedule == {
        "schedule:skip": [at(600)],
        "schedule:catch-up": [at(420), at(480), at(540), at(600)],
    }
    assert late.next_run_at == at(660)


async def test_a_tick_enqueued_ahead_waits_for_its_time(queue: jobqueue.Queue) -> None:
    schedule = jobqueue.Schedule("ahead", "t", cron="*/5 * * * *")
    await queue.declare_schedules([schedule])
    await queue.run_schedules([schedule], now=at(1))
    # The operator looks a poll ahead: the 00:05 tick is enqueued at 00:04:30, due at 00:05.
    (job,) = (await queue.run_schedules([schedule], now=at(270), ahead=60)).enqueued
    assert job.run_at == at(300)
    assert await queue.claim_jobs("w", limit=1, now=at(299)) == []
    (claimed,) = await queue.claim_jobs("w", limit=1, now=at(300))
    assert claimed.id == job.id


async def test_three_schedulers_with_moved_clocks_enqueue_each_tick_once(
    database_url: str, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    """Three processes run one schedule at once, their clocks 3 s behind, right and 4 s
    ahead; one of them restarts halfway. Every 10-second tick is enqueued exactly once and
    none is skipped."""
    schedule = jobqueue.Schedule("pulse", "t", every=10)
    skews = [-3.0, 0.0, 4.0]
    queues = [jobqueue.Queue(database_url, pool_max_size=2) for _ in skews]
    for each in queues:
        await each.open()
    enqueued_by: collections.Counter[int] = collections.Counter()
    try:
        await asyncio.gather(*(each.declare_schedules([schedule]) for each in queues))
        await queues[1].run_schedules([schedule], now=at(1))  # the first look: next at 10 s
        for step in range(1, 60):  # two minutes of clock, a pass every 2 s per scheduler
            if step == 30:  # a restart: the state is in the database, not in the process
                await queues[1].close()
                queues[1] = jobqueue.Queue(database_url, pool_max_size=2)
                await queues[1].open()
            runs = await asyncio.gather(
                *(
                    each.run_schedules([schedule], now=at(2 * step + skew))
                    for each, skew in zip(queues, skews, strict=True)
                )
            )
            for index, run in enumerate(runs):
                enqueued_by[index] += len(run.enqueued)
    finally:
        for each in queues:
            await each.close()
    ticks = await tick_jobs(conn)
    times = [run_at for _, run_at in ticks]
    # From the first tick after the first look to the last the fastest clock saw: all, once.
    assert times == [at(seconds) for seconds in range(10, 130, 10)]
    assert len({key for key, _ in ticks}) == len(ticks)
    assert sum(enqueued_by.values()) == len(ticks)
    assert len(enqueued_by) >= 2  # the work was shared, not one process's alone


async def test_a_changed_timing_starts_again_and_an_unchanged_one_is_not_rewritten(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    hourly = jobqueue.Schedule("job", "t", cron="0 * * * *")
    await queue.declare_schedules([hourly], now=at(0))
    await queue.run_schedules([hourly], now=at(1))

    async def row_version() -> tuple[str, datetime.datetime | None]:
        cursor = await conn.execute(
            "SELECT xmin::text, next_run_at FROM job_schedules WHERE name = 'job'"
        )
        row = await cursor.fetchone()
        assert row is not None
        return row[0], row[1]

    version, next_run = await row_version()
    assert next_run == at(3600)
    await queue.declare_schedules([hourly], now=at(5))
    assert await row_version() == (version, next_run)  # declared as it was: untouched
    # A new payload keeps the timing's place; a new timing starts from its next tick.
    await queue.declare_schedules([jobqueue.Schedule("job", "t", {"v": 2}, cron="0 * * * *")])
    assert (await row_version())[1] == at(3600)
    quarterly = jobqueue.Schedule("job", "t", cron="*/15 * * * *")
    await queue.declare_schedules([quarterly])
    (state,) = await queue.list_schedules()
    assert state.cron == "*/15 * * * *"
    run = await queue.run_schedules([quarterly], now=at(20))
    assert run.enqueued == []
    assert run.next_run_at == at(900)


async def test_a_deleted_schedule_is_said_to_be_undeclared(queue: jobqueue.Queue) -> None:
    schedule = jobqueue.Schedule("gone", "t", every=60)
    await queue.declare_schedules([schedule])
    (listed,) = await queue.list_schedules()
    assert listed.next_run_at is not None  # worked out from its definition before any run
    assert await queue.delete_schedule("gone") is True
    assert await queue.delete_schedule("gone") is False
    run = await queue.run_schedules([schedule])
    assert run.enqueued == []
    assert not run.declared


async def test_bad_schedule_calls_are_clear_errors(queue: jobqueue.Queue) -> None:
    schedule = jobqueue.Schedule("s", "t", every=60)
    with pytest.raises(ValueError, match="given twice"):
        await queue.declare_schedules([schedule, schedule])
    with pytest.raises(TypeError, match="expected a Schedule"):
        await queue.run_schedules([{"name": "s"}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="ahead must be a non-negative"):
        await queue.run_schedules([schedule], ahead=-1)


# --- on real workers ---------------------------------------------------------------------------


async def test_workers_with_moved_clocks_run_a_schedule_from_code_once_per_tick(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    """Three real workers (in this process), their clocks 0.3 s behind, right and 0.4 s
    ahead, run a schedule ticking every second: each tick's job runs once, none is
    missed, and a worker of another queue does not run it."""
    runs: collections.Counter[str] = collections.Counter()

    @jobqueue.handler("tick", registry=registry)
    async def tick(payload: object, job: jobqueue.RunningJob) -> None:
        assert job.unique_key is not None
        runs[job.unique_key] += 1

    registry.add_schedule(jobqueue.Schedule("every-second", "tick", every=1))

    def skewed(seconds: float) -> typing.Callable[[], datetime.datetime]:
        offset = datetime.timedelta(seconds=seconds)
        return lambda: datetime.datetime.now(UTC) + offset

    workers = [run_worker(clock=skewed(seconds)) for seconds in (-0.3, 0.0, 0.4)]
    other = run_worker(queue="other")
    assert [worker.state()["schedules"] for worker in workers] == [["every-second"]] * 3
    assert other.state()["schedules"] == []
    await waiting.until(lambda: len(runs) >= 4, timeout=20, what="four ticks run")
    for worker in workers:
        worker.stop()
    for worker in workers:
        await worker.wait_stopped()
    async with await psycopg.AsyncConnection.connect(queue.conninfo) as conn:
        cursor = await conn.execute(
            "SELECT unique_key, run_at, status FROM jobs WHERE type = 'tick' ORDER BY run_at"
        )
        ticks = await cursor.fetchall()
    times = [run_at for _, run_at, _ in ticks]
    assert {(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)} == {
        1.0
    }
    assert {key for key, _, status in ticks if status == "done"} == set(runs)
    assert set(runs.values()) == {1}, runs
    (state,) = await queue.list_schedules()
    assert state.name == "every-second"
    assert state.last_run_at == times[-1]


async def test_the_module_functions_and_the_sync_facade_list_schedules(
    queue: jobqueue.Queue, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queue.declare_schedules([jobqueue.Schedule("listed", "t", every=60, queue="q")])
    monkeypatch.setenv("DATABASE_URL", database_url)
    jobqueue.configure()
    try:
        assert [state.name for state in await jobqueue.list_schedules()] == ["listed"]
        assert await jobqueue.list_schedules("other") == []
    finally:
        await jobqueue.close_default_queue()

    def in_a_thread() -> list[str]:
        with jobqueue.SyncQueue(database_url) as sync_queue:
            names = [state.name for state in sync_queue.list_schedules("q")]
            assert sync_queue.delete_schedule("listed") is True
            return names

    assert await asyncio.to_thread(in_a_thread) == ["listed"]
    assert await queue.list_schedules() == []
