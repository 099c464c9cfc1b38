"""The operator's database side (``jobqueue_operator.monitor``) on a real PostgreSQL: it
migrates before anything else, measures the backlog, rescues, purges, ranks workers, reads
the database's vacuum health now and then, and wakes up on NOTIFY."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import socket
import typing

import prometheus_client
import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import metrics as names
from jobqueue_operator import metrics, monitor, schedules

UTC = datetime.UTC


def ago(seconds: float) -> datetime.datetime:
    return datetime.datetime.now(UTC) - datetime.timedelta(seconds=seconds)


async def test_open_migrates_an_empty_database_first(empty_database_url: str) -> None:
    watcher = monitor.QueueMonitor(empty_database_url, "default")
    await watcher.open()
    try:
        depth = await watcher.observe(due_within=10)
        assert (depth.ready, depth.running, depth.by_type) == (0, 0, ())
        await watcher.open()  # again: nothing to apply, nothing breaks
    finally:
        await watcher.close()


async def test_observe_sums_the_queues_types(queue: jobqueue.Queue, database_url: str) -> None:
    await queue.enqueue_jobs([jobqueue.NewJob("a"), jobqueue.NewJob("a"), jobqueue.NewJob("b")])
    await queue.enqueue_job("a", run_at=datetime.datetime.now(UTC) + datetime.timedelta(seconds=5))
    await queue.enqueue_job("a", run_at=datetime.datetime.now(UTC) + datetime.timedelta(hours=1))
    await queue.enqueue_job("c", queue="elsewhere")
    await queue.claim_jobs("pod-1", limit=1)
    watcher = monitor.QueueMonitor(database_url, "default")
    await watcher.open()
    try:
        depth = await watcher.observe(due_within=60)
        await queue.pause_queue()
        paused = await watcher.observe(due_within=60)
        await queue.pause_queue("elsewhere")
        await queue.resume_queue()
        resumed = await watcher.observe(due_within=60)
    finally:
        await watcher.close()
    assert (depth.ready, depth.running, depth.delayed, depth.due_soon) == (2, 1, 2, 1)
    assert depth.pending == 4
    assert (depth.paused, paused.paused, resumed.paused) == (False, True, False)
    assert sorted(row.type for row in depth.by_type) == ["a", "b"]
    assert depth.oldest_ready_age is not None


async def test_observe_leaves_out_what_the_limits_hold_back(
    queue: jobqueue.Queue, database_url: str
) -> None:
    await queue.enqueue_jobs([jobqueue.NewJob("a", concurrency_key="tenant")] * 6)
    await queue.enqueue_jobs([jobqueue.NewJob("a", concurrency_key="other")] * 2)
    watcher = monitor.QueueMonitor(database_url, "default")
    await watcher.open()
    try:
        free = await watcher.observe(due_within=60)
        await queue.limit_concurrency(2, per_key=True)
        limited = await watcher.observe(due_within=60)
    finally:
        await watcher.close()
    assert (free.ready, free.held, free.claimable) == (8, 0, 8)
    assert (limited.ready, limited.held, limited.claimable) == (8, 4, 4)


async def test_rescue_prune_and_ranking(queue: jobqueue.Queue, database_url: str) -> None:
    jobs = await queue.enqueue_jobs((jobqueue.NewJob("a") for _ in range(6)), now=ago(7200))
    claimed = await queue.claim_jobs("dead-pod", limit=1, now=ago(3600))
    claimed += await queue.claim_jobs("live-pod", limit=2)
    rest = [job for job in jobs if job.id not in {taken.id for taken in claimed}]
    for job in rest[:2]:
        await queue.complete_job(job.id, None, now=ago(2 * 86_400))
    await queue.fail_job(rest[2].id, "x", final=True, now=ago(2 * 86_400))
    watcher = monitor.QueueMonitor(database_url, "default")
    await watcher.open()
    try:
        assert await watcher.running_by_worker() == {"dead-pod": 1, "live-pod": 2}
        rescued = await watcher.rescue(300)
        assert [(job.worker_id, job.status) for job in rescued] == [("dead-pod", "pending")]
        assert await watcher.running_by_worker() == {"live-pod": 2}
        # Done jobs are kept a day, failed ones a week: only the done ones go.
        assert await watcher.prune(done_older_than=86_400, failed_older_than=7 * 86_400) == 2
        assert await watcher.prune(done_older_than=60, failed_older_than=60) == 1
    finally:
        await watcher.close()
    assert await queue.get_queue_stats() == {
        "pending": 1,
        "running": 2,
        "failed": 0,
        "done": 0,
        "cancelled": 0,
    }


async def test_the_specs_schedules_are_enqueued_a_poll_ahead_and_declared_again(
    queue: jobqueue.Queue, database_url: str
) -> None:
    """A tick within the next poll is enqueued now, due at its time (so it counts as due
    soon for the scaling); a schedule deleted by hand is declared again."""
    pulse = schedules.from_spec([{"name": "pulse", "type": "ping", "everySeconds": 2}], "books")
    watcher = monitor.QueueMonitor(database_url, "books")
    await watcher.open()
    try:
        assert await watcher.run_schedules([], ahead=10) is None
        first = await watcher.run_schedules(pulse, ahead=10)
        assert first is not None
        # The first look works out the next tick: it and the next four are within the poll.
        ticks = [job.run_at for job in first.enqueued]
        assert len(ticks) == 5
        assert first.now < ticks[0] <= first.now + datetime.timedelta(seconds=2)
        assert {(b - a).total_seconds() for a, b in itertools.pairwise(ticks)} == {2.0}
        assert {job.queue for job in first.enqueued} == {"books"}
        depth = await watcher.observe(due_within=10)
        assert (depth.ready, depth.due_soon) == (0, 5)
        (state,) = await watcher.schedule_states(pulse)
        assert state.last_run_at == ticks[-1]
        assert await queue.delete_schedule("pulse")
        gone = await watcher.run_schedules(pulse, ahead=10)
        assert gone is not None
        assert not gone.declared
        again = await watcher.run_schedules(pulse, ahead=10)
        assert again is not None
        assert again.declared
        assert [state.name for state in await queue.list_schedules()] == ["pulse"]
    finally:
        await watcher.close()


async def test_vacuum_health_is_read_at_most_every_interval_and_exported(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any], database_url: str
) -> None:
    await conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")  # ours alone
    await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(20))
    await conn.execute("DELETE FROM jobs")
    watcher = monitor.QueueMonitor(database_url, "default")
    await watcher.open()
    try:
        assert await watcher.vacuum_health(every=3600) is not None  # the first call reads
        assert await watcher.vacuum_health(every=3600) is None  # read a moment ago

        async def deleted() -> jobqueue.VacuumHealth | None:
            health = await watcher.vacuum_health(every=0)  # reads every time
            assert health is not None
            (jobs,) = [table for table in health.tables if table.table == "jobs"]
            return health if jobs.dead_tuples >= 20 else None

        reading = await waiting.eventually(deleted, what="the deletes in the statistics")
    finally:
        await watcher.close()
    registry = prometheus_client.CollectorRegistry()
    metrics.OperatorMetrics(registry).vacuum_health("ns", "books", reading)
    value = registry.get_sample_value
    jobs = {"namespace": "ns", "jobqueue": "books", "table": "jobs"}
    assert value(names.DATABASE_TABLE_DEAD_TUPLES, jobs) == 20
    assert value(names.DATABASE_TABLE_SIZE, jobs) > 0
    for table in ("job_counts", "job_workers", "job_schedules"):
        assert value(names.DATABASE_TABLE_LIVE_TUPLES, {**jobs, "table": table}) is not None
    source = {"namespace": "ns", "jobqueue": "books"}
    assert value(names.DATABASE_XMIN_HORIZON_AGE, source) is not None
    assert value(names.DATABASE_OLDEST_TRANSACTION_AGE, source) is not None


async def test_a_notify_wakes_the_operator(queue: jobqueue.Queue, database_url: str) -> None:
    woken = asyncio.Event()
    watcher = monitor.QueueMonitor(database_url, "default", on_ready=woken.set)
    await watcher.open()
    try:
        await waiting.eventually(
            lambda: asyncio.sleep(0, watcher.listening), what="the LISTEN connection"
        )
        woken.clear()  # connecting wakes it once, in case a notice was missed
        await queue.enqueue_job("a", queue="elsewhere")
        await queue.enqueue_job("a")
        await asyncio.wait_for(woken.wait(), timeout=15)
    finally:
        await watcher.close()
    assert not watcher.listening


async def test_an_unreachable_database_is_a_transient_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket is closed
    watcher = monitor.QueueMonitor(
        f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=2", "default"
    )
    with pytest.raises(psycopg.OperationalError):
        await watcher.open()
    await watcher.close()
