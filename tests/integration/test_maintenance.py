"""The maintenance API the operator uses: queue depth, retention, migrate() (issue 9, part 4),
vacuum health (issue 24, part 4)."""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import datetime
import typing
import uuid

import psycopg
import psycopg.conninfo
import pytest
import waiting
from test_cli import run

import jobqueue
from jobqueue import maintenance

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


# --- vacuum health (issue 24, part 4) -----------------------------------------------------------


async def vacuum_of(queue: jobqueue.Queue, table: str) -> jobqueue.TableVacuum:
    (found,) = [each for each in (await queue.vacuum_health()).tables if each.table == table]
    return found


@contextlib.asynccontextmanager
async def repeatable_read(url: str) -> collections.abc.AsyncIterator[None]:
    """A REPEATABLE READ transaction of another session, its snapshot taken: it holds the
    database's xmin horizon until the block ends."""
    async with await psycopg.AsyncConnection.connect(url) as holder:
        await holder.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await holder.execute("SELECT 1")
        yield
        # Ended before the block ends: closing alone does not wait for the server to end it.
        await holder.rollback()


async def test_vacuum_health_counts_dead_rows_and_vacuums(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any], database_url: str
) -> None:
    # Only this test's vacuums: an autovacuum could remove the dead rows before they are seen.
    await conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
    fresh = await queue.vacuum_health()
    assert [table.table for table in fresh.tables] == sorted(maintenance.CHURNING_TABLES)
    jobs = fresh.tables[[table.table for table in fresh.tables].index("jobs")]
    assert (jobs.vacuums, jobs.autovacuums, jobs.last_vacuum_age) == (0, 0, None)
    assert jobs.table_bytes > 0  # a page at least, empty
    assert jobs.index_bytes > 0
    await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(200))

    # The statistics arrive from each backend within about a second: waited for.
    async def live() -> jobqueue.TableVacuum | None:
        found = await vacuum_of(queue, "jobs")
        return found if found.live_tuples >= 200 else None

    filled = await waiting.eventually(live, what="200 live rows in the statistics")
    assert filled.table_bytes > jobs.table_bytes
    await conn.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 150)")

    async def dead() -> jobqueue.TableVacuum | None:
        found = await vacuum_of(queue, "jobs")
        return found if found.dead_tuples >= 150 else None

    deleted = await waiting.eventually(dead, what="150 dead rows in the statistics")
    assert deleted.live_tuples < filled.live_tuples

    # A snapshot older than the deletes keeps the dead rows through a vacuum...
    async with repeatable_read(database_url):
        await conn.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 10)")
        # Its count of deletes reaches the statistics now, not after the vacuums below, which
        # would count these dead rows twice.
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("VACUUM jobs")
        kept = await vacuum_of(queue, "jobs")
        assert kept.vacuums == 1
        assert kept.dead_tuples >= 10
    # ... and without it, the next vacuum removes them all.
    await conn.execute("VACUUM jobs")
    vacuumed = await vacuum_of(queue, "jobs")
    assert (vacuumed.vacuums, vacuumed.dead_tuples) == (2, 0)
    assert vacuumed.last_vacuum_age is not None
    assert 0 <= vacuumed.last_vacuum_age < 60
    later = await queue.vacuum_health(now=datetime.datetime.now(UTC) + datetime.timedelta(hours=1))
    (moved,) = [table for table in later.tables if table.table == "jobs"]
    assert moved.last_vacuum_age == pytest.approx(3600, abs=60)


async def test_the_xmin_horizon_follows_a_held_transaction(
    queue: jobqueue.Queue, database_url: str
) -> None:
    async with repeatable_read(database_url):
        for _ in range(5):  # a transaction id each, after the held snapshot
            await queue.enqueue_job("a")
        held = await queue.vacuum_health()
        assert held.sees_all_sessions  # the tests' role is a superuser
        assert held.horizon_age >= 5
        assert held.oldest_transaction_age > 0
        for _ in range(5):
            await queue.enqueue_job("a")
        older = await queue.vacuum_health()
        assert older.horizon_age >= held.horizon_age + 5
        assert older.oldest_transaction_age > held.oldest_transaction_age
        hour_on = await queue.vacuum_health(
            now=datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
        )
        assert hour_on.oldest_transaction_age >= 3600

    async def released() -> jobqueue.VacuumHealth | None:
        health = await queue.vacuum_health()
        falls = health.horizon_age < older.horizon_age
        return health if falls and health.oldest_transaction_age < 1 else None

    await waiting.eventually(released, what="the horizon released")


async def test_without_pg_read_all_stats_only_the_age_in_transactions_sees_other_roles(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any], database_url: str
) -> None:
    role = f"watcher_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE {role} LOGIN")  # no grant on anything
    watcher_url = psycopg.conninfo.make_conninfo(database_url, user=role)
    try:
        async with repeatable_read(database_url), jobqueue.Queue(watcher_url) as watcher:
            # The superuser's transaction is another role's, to the watcher.
            for _ in range(3):
                await queue.enqueue_job("a")
            blind = await watcher.vacuum_health()
            assert not blind.sees_all_sessions
            assert blind.horizon_age >= 3
            assert blind.oldest_transaction_age == 0
            assert "jobs" in [table.table for table in blind.tables]
            await conn.execute(f"GRANT pg_read_all_stats TO {role}")
            seeing = await watcher.vacuum_health()
            assert seeing.sees_all_sessions
            assert seeing.oldest_transaction_age > 0
    finally:
        await conn.execute(f"DROP ROLE {role}")


def test_vacuum_health_through_the_sync_facade(database_url: str) -> None:
    with jobqueue.SyncQueue(database_url) as queue:
        health = queue.vacuum_health()
    assert [table.table for table in health.tables] == sorted(maintenance.CHURNING_TABLES)
