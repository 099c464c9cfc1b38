"""The queue API against a real PostgreSQL: S3-S8, S12, S13."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import logging
import typing
import uuid

import psycopg
import psycopg.sql
import pytest
import waiting

import jobqueue
from jobqueue import db, producer, runner, statements

UTC = datetime.UTC
T0 = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


async def table_counts(conn: psycopg.AsyncConnection[typing.Any]) -> dict[str, int]:
    cursor = await conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
    counts = producer.empty_stats()
    counts.update(dict(await cursor.fetchall()))
    return counts


# --- enqueue (S3, S4, S5) ----------------------------------------------------------------


async def test_enqueue_returns_the_stored_job(queue: jobqueue.Queue) -> None:
    payload = {"bookId": 123, "filePath": "/path/to/book.epub", "tags": ["é", "书"]}
    job = await queue.enqueue_job("parseBook", payload)
    assert isinstance(job.id, uuid.UUID)
    assert job.type == "parseBook"
    assert job.status is jobqueue.JobStatus.PENDING
    assert job.payload == payload
    assert (job.attempts, job.max_attempts) == (0, 3)
    assert job.result is None
    assert job.error is None
    assert job.locked_at is None
    assert job.locked_by is None
    assert job.run_at.tzinfo is not None
    assert job.queue == "default"
    assert await queue.get_job_status(job.id) == job
    assert await queue.get_job_status(str(job.id)) == job


async def test_times_come_back_in_utc_whatever_the_servers_zone(
    database_url: str, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    """The queue's connections read times in UTC (the driver's cheap path): the same
    instants as the server's own zone gives, with the standard library's UTC zone."""
    name = conn.info.dbname
    await conn.execute(
        psycopg.sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Tokyo'").format(
            psycopg.sql.Identifier(name)
        )
    )
    async with jobqueue.Queue(database_url) as queue:
        job = await queue.enqueue_job("ping")
        async with queue.pool.connection() as pooled:
            assert pooled.info.parameter_status("TimeZone") == "UTC"
    assert job.created_at.tzinfo is UTC
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as tokyo:
        cursor = await tokyo.execute("SELECT created_at FROM jobs WHERE id = %s", (job.id,))
        row = await cursor.fetchone()
    assert row is not None
    assert str(row[0].tzinfo) == "Asia/Tokyo"
    assert row[0] == job.created_at


async def test_a_leased_connection_goes_back_clean(database_url: str) -> None:
    """``db.Lease`` skips ``pool.connection()``'s commit; what a block leaves behind (an open
    transaction, an error, a statement cut off by cancellation) never reaches the next one."""
    pool = db.make_pool(database_url, min_size=1, max_size=1)
    await pool.open(wait=True)
    try:
        async with db.Lease(pool) as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (x int)")
        with pytest.raises(ZeroDivisionError):
            await _lease_and_fail(pool)
        slow = asyncio.create_task(_lease_and_sleep(pool))
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watch:

            async def sleeping() -> bool:
                cursor = await watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
                )
                return await cursor.fetchone() == (1,)

            await waiting.eventually(sleeping, what="the leased connection's statement")
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        async with db.Lease(pool) as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            cursor = await conn.execute(
                "SELECT to_regclass('left_open') IS NULL AND to_regclass('left_by_error') IS NULL"
            )
            assert await cursor.fetchone() == (True,)
    finally:
        await pool.close()


async def _lease_and_fail(pool: statements.Pool) -> None:
    async with db.Lease(pool) as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE left_by_error (x int)")
        raise ZeroDivisionError


async def _lease_and_sleep(pool: statements.Pool) -> None:
    async with db.Lease(pool) as conn:
        await conn.execute("SELECT pg_sleep(60)")


@pytest.mark.parametrize(
    ("payload", "options"),
    [
        (None, {}),
        ({"n": 1.5, "big": 10**30, "list": [1, "a", None, {"x": True}], "é": "书"}, {}),
        ([1e16, 0.1], {"run_at": at(60), "max_attempts": 7}),
        ("text", {"queue": "other", "priority": -5}),
        ((1, 2), {"priority": 3}),  # a tuple is stored, and returned, as a JSON list
    ],
)
async def test_enqueue_returns_what_get_job_status_reads_back(
    queue: jobqueue.Queue, payload: typing.Any, options: dict[str, typing.Any]
) -> None:
    """``enqueue_job`` reads back only the columns the database decides and fills in the
    rest from what it sent: the job it returns is the one stored, whatever the options."""
    job = await queue.enqueue_job("parseBook", payload, **options)
    assert await queue.get_job_status(job.id) == job
    job = await queue.enqueue_job("parseBook", payload, now=at(5), **options)
    assert await queue.get_job_status(job.id) == job
    assert job.run_at == options.get("run_at", at(5))


async def test_concurrent_single_enqueues_each_store_their_job(queue: jobqueue.Queue) -> None:
    """Tasks enqueueing at once: one uses the kept connection, the others lease their own."""
    jobs = await asyncio.gather(*(queue.enqueue_job("ping", {"n": n}) for n in range(40)))
    assert len({job.id for job in jobs}) == 40
    for job in jobs:
        assert await queue.get_job_status(job.id) == job
    assert (await queue.get_queue_stats())["pending"] == 40


async def test_single_enqueues_leave_a_pool_of_one_to_everything_else(database_url: str) -> None:
    """A kept connection would be the pool's only one: a Queue with a pool of one keeps
    none, so status and stats still get a connection (or this fails with PoolTimeout)."""
    async with jobqueue.Queue(database_url, pool_max_size=1, pool_timeout=2) as queue:
        job = await queue.enqueue_job("ping")
        assert await queue.get_job_status(job.id) == job
        assert (await queue.get_queue_stats())["pending"] == 1


async def test_a_shared_pool_gets_the_kept_connection_back_on_close(database_url: str) -> None:
    pool = db.make_pool(database_url, min_size=2, max_size=2)
    await pool.open(wait=True)
    try:
        async with jobqueue.Queue(pool=pool) as queue:
            await queue.enqueue_job("ping")
            assert pool.get_stats()["pool_available"] == 1  # the other one is kept
        assert pool.get_stats()["pool_available"] == 2
    finally:
        await pool.close()


async def test_enqueue_without_payload_stores_null(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("ping")
    assert job.payload is None


async def test_custom_max_attempts_is_kept(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("summarizeBook", {"bookId": 1}, max_attempts=5)
    assert job.max_attempts == 5


async def test_delayed_job_is_not_claimed_before_run_at(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("embedBook", {"bookId": 1}, run_at=at(60))
    assert job.run_at == at(60)
    assert await queue.claim_jobs("w", now=at(59.999)) == []
    (claimed,) = await queue.claim_jobs("w", now=at(60))
    assert claimed.id == job.id


async def test_enqueue_jobs_is_one_batch_in_order(queue: jobqueue.Queue) -> None:
    specs = [jobqueue.NewJob("t", {"n": n}, priority=n % 3) for n in range(500)]
    jobs = await queue.enqueue_jobs(specs)
    assert [job.payload["n"] for job in jobs] == list(range(500))
    assert len({job.id for job in jobs}) == 500
    assert (await queue.get_queue_stats())["pending"] == 500


async def test_enqueue_jobs_checks_all_before_writing(queue: jobqueue.Queue) -> None:
    specs = [jobqueue.NewJob("t", {"n": 1}), jobqueue.NewJob("", {"n": 2})]
    with pytest.raises(ValueError, match="job type must not be empty"):
        await queue.enqueue_jobs(specs)
    assert (await queue.get_queue_stats())["pending"] == 0
    assert await queue.enqueue_jobs([]) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"type": ""}, ValueError, "job type must not be empty"),
        ({"type": "   "}, ValueError, "job type must not be empty"),
        ({"type": "x" * 201}, ValueError, "201 characters long"),
        ({"type": 7}, TypeError, "job type must be a string"),
        ({"payload": {"when": datetime.date(2020, 1, 1)}}, TypeError, "not JSON-serialisable"),
        ({"payload": {"x": float("nan")}}, ValueError, "payload is not valid JSON"),
        ({"payload": "nul\x00byte"}, ValueError, "NUL character"),
        ({"max_attempts": 0}, ValueError, "max_attempts must be between 1"),
        ({"max_attempts": "3"}, TypeError, "max_attempts must be an integer"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an integer"),
        ({"run_at": datetime.datetime(2030, 1, 1)}, ValueError, "timezone-aware"),
        ({"run_at": "2030-01-01"}, TypeError, "run_at must be a datetime"),
        ({"queue": ""}, ValueError, "queue must not be empty"),
    ],
)
async def test_enqueue_rejects_bad_arguments(
    queue: jobqueue.Queue, kwargs: dict[str, typing.Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, typing.Any] = {"type": "parseBook", "payload": {"bookId": 1}, **kwargs}
    with pytest.raises(error, match=message):
        await queue.enqueue_job(**arguments)
    assert await queue.get_queue_stats() == producer.empty_stats()


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234"])
async def test_malformed_job_id_is_a_value_error(queue: jobqueue.Queue, bad_id: str) -> None:
    with pytest.raises(ValueError, match="malformed job id"):
        await queue.get_job_status(bad_id)
    with pytest.raises(ValueError, match="malformed job id"):
        await queue.complete_job(bad_id, {})


async def test_unknown_job_id(queue: jobqueue.Queue) -> None:
    unknown = uuid.uuid4()
    assert await queue.get_job_status(unknown) is None
    with pytest.raises(jobqueue.JobNotFoundError, match=str(unknown)):
        await queue.complete_job(unknown, {})
    with pytest.raises(jobqueue.JobNotFoundError):
        await queue.fail_job(unknown, "boom")


async def test_seed_shaped_insert_still_works(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    cursor = await conn.execute(
        "INSERT INTO jobs (type, payload) VALUES ('parseBook', '{\"bookId\": 1}') RETURNING id"
    )
    row = await cursor.fetchone()
    assert row is not None
    (claimed,) = await queue.claim_jobs("w")
    assert claimed.id == row[0]
    assert (await queue.get_queue_stats())["running"] == 1


async def test_rows_of_a_newer_or_older_schema_still_become_jobs(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    """A rolling upgrade: columns this version does not know are left out, columns it
    expects but the row lacks take their defaults, in whatever order the row has them."""
    job = await queue.enqueue_job("t", {"n": 1}, priority=7, queue="q")
    newer = conn.cursor(row_factory=db.job_row)
    await newer.execute("SELECT 'later' AS added_later, jobs.* FROM jobs")
    assert await newer.fetchall() == [job]
    older = conn.cursor(row_factory=db.job_row)  # no queue column, priority moved first
    await older.execute(
        "SELECT priority, id, type, status, payload, result, attempts, max_attempts, run_at,"
        " locked_at, locked_by, error, created_at, updated_at FROM jobs"
    )
    (row,) = await older.fetchall()
    assert row == dataclasses.replace(job, queue="default")
    assert row.priority == 7
    assert row.status is jobqueue.JobStatus.PENDING


async def test_claimed_jobs_are_built_by_the_factory_given(queue: jobqueue.Queue) -> None:
    await queue.enqueue_job("t", {"n": 1})
    (claimed,) = await queue.claim_jobs(
        "w", job_factory=functools.partial(runner.RunningJob, pool=queue.pool)
    )
    assert isinstance(claimed, runner.RunningJob)
    assert claimed.pool is queue.pool
    assert claimed.payload == {"n": 1}


# --- claiming (S12) --------------------------------------------------------------------------


async def test_claim_marks_running_and_counts_the_attempt(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("t", now=at(0))
    (claimed,) = await queue.claim_jobs("worker-1", now=at(5))
    assert claimed.id == job.id
    assert claimed.status is jobqueue.JobStatus.RUNNING
    assert claimed.attempts == 1
    assert claimed.locked_by == "worker-1"
    assert claimed.locked_at == at(5) == claimed.heartbeat_at
    assert await queue.claim_jobs("worker-2", now=at(5)) == []


async def test_claim_takes_a_batch_in_priority_then_time_order(queue: jobqueue.Queue) -> None:
    low_early = await queue.enqueue_job("t", run_at=at(0))
    low_late = await queue.enqueue_job("t", run_at=at(1))
    high = await queue.enqueue_job("t", run_at=at(2), priority=10)
    await queue.enqueue_job("t", run_at=at(100))
    claimed = await queue.claim_jobs("w", limit=50, now=at(10))
    assert {job.id for job in claimed} == {low_early.id, low_late.id, high.id}
    (first,) = await queue.claim_jobs("w2", limit=1, now=at(100))
    assert first.run_at == at(100)


async def test_claim_is_limited_to_queue_and_types(queue: jobqueue.Queue) -> None:
    books = await queue.enqueue_job("parseBook", queue="books")
    other = await queue.enqueue_job("embedBook", queue="books")
    await queue.enqueue_job("parseBook")
    claimed = await queue.claim_jobs("w", queue="books", types_=["parseBook"], limit=10)
    assert [job.id for job in claimed] == [books.id]
    claimed = await queue.claim_jobs("w", queue="books", limit=10)
    assert [job.id for job in claimed] == [other.id]


async def test_twenty_claimers_claim_each_of_2000_jobs_exactly_once(
    database_url: str,
) -> None:
    async with jobqueue.Queue(database_url, pool_max_size=20) as queue:
        jobs = await queue.enqueue_jobs(jobqueue.NewJob("race", {"n": n}) for n in range(2000))
        claims: dict[str, list[uuid.UUID]] = {f"w{n}": [] for n in range(20)}

        async def claimer(worker: str) -> None:
            while batch := await queue.claim_jobs(worker, limit=7):
                claims[worker] += [job.id for job in batch]

        await asyncio.gather(*(claimer(worker) for worker in claims))
    claimed = [job_id for ids in claims.values() for job_id in ids]
    assert len(claimed) == 2000
    assert set(claimed) == {job.id for job in jobs}
    assert sum(1 for ids in claims.values() if ids) > 1, "claiming did not run concurrently"


# --- finishing (S8, S13) -------------------------------------------------------------------


async def test_complete_job(queue: jobqueue.Queue, caplog: pytest.LogCaptureFixture) -> None:
    job = await queue.enqueue_job("t")
    await queue.claim_jobs("w")
    with caplog.at_level(logging.INFO, logger="jobqueue.queue"):
        done = await queue.complete_job(job.id, {"result": "data"})
    assert done.status is jobqueue.JobStatus.DONE
    assert done.result == {"result": "data"}
    assert done.locked_at is None
    assert done.locked_by is None
    assert f"[Queue] Job {job.id} completed" in caplog.messages


async def test_finished_jobs_cannot_be_completed_or_failed_again(queue: jobqueue.Queue) -> None:
    done = await queue.complete_job((await queue.enqueue_job("t")).id, {"v": 1})
    failed = await queue.enqueue_job("t", max_attempts=1)
    failed = await queue.fail_job(failed.id, "boom")
    assert failed.status is jobqueue.JobStatus.FAILED
    for job in (done, failed):
        with pytest.raises(jobqueue.JobStateError, match="already finished"):
            await queue.complete_job(job.id, {"v": 2})
        with pytest.raises(jobqueue.JobStateError, match="already finished"):
            await queue.fail_job(job.id, "again")
    assert (await queue.get_job_status(done.id)) == done
    assert (await queue.get_job_status(failed.id)) == failed


async def test_failure_is_retried_30_seconds_later_until_max_attempts(
    queue: jobqueue.Queue,
) -> None:
    job = await queue.enqueue_job("t", max_attempts=2, now=at(0))
    (claimed,) = await queue.claim_jobs("w", now=at(1))
    retried = await queue.fail_job(claimed.id, "first failure", now=at(2))
    assert retried.status is jobqueue.JobStatus.PENDING
    assert retried.attempts == 1
    assert retried.run_at == at(32)
    assert retried.error == "first failure"
    assert retried.locked_by is None
    assert await queue.claim_jobs("w", now=at(31.9)) == []
    (again,) = await queue.claim_jobs("w", now=at(32))
    assert again.attempts == 2
    final = await queue.fail_job(again.id, "second failure", now=at(33))
    assert final.status is jobqueue.JobStatus.FAILED
    assert final.attempts == 2
    assert final.error == "second failure"
    assert job.id == final.id


async def test_retry_delay_and_final_failure_are_per_call(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("t", max_attempts=5)
    await queue.claim_jobs("w", now=at(0))
    retried = await queue.fail_job(job.id, "soon", retry_delay=2.5, now=at(10))
    assert retried.run_at == at(12.5)
    await queue.claim_jobs("w", now=at(13))
    final = await queue.fail_job(job.id, "bad payload", final=True, now=at(14))
    assert final.status is jobqueue.JobStatus.FAILED
    assert final.attempts == 2


async def test_failing_a_pending_job_by_hand_uses_an_attempt(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("t", max_attempts=1)
    failed = await queue.fail_job(job.id, "Error message")
    assert failed.status is jobqueue.JobStatus.FAILED
    assert failed.attempts == 1


async def test_worker_cannot_finish_a_job_it_no_longer_holds(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("t")
    await queue.claim_jobs("old", now=at(0))
    assert await queue.cleanup_stale_locks(1, now=at(60)) == 1
    await queue.claim_jobs("new", now=at(61))
    with pytest.raises(jobqueue.JobStateError, match="worker old no longer holds it"):
        await queue.complete_job(job.id, {"from": "old"}, worker_id="old")
    done = await queue.complete_job(job.id, {"from": "new"}, worker_id="new")
    assert done.result == {"from": "new"}


# --- stale locks (S8) ------------------------------------------------------------------------


async def test_cleanup_stale_locks_requeues_and_fails_by_attempts(queue: jobqueue.Queue) -> None:
    retryable = await queue.enqueue_job("t", max_attempts=3)
    exhausted = await queue.enqueue_job("t", max_attempts=1)
    await queue.claim_jobs("dead", limit=2, now=at(0))
    fresh = await queue.enqueue_job("t")
    await queue.claim_jobs("alive", now=at(250))
    assert await queue.cleanup_stale_locks(300, now=at(299)) == 0
    assert await queue.cleanup_stale_locks(300, now=at(301)) == 2
    requeued = await queue.get_job_status(retryable.id)
    assert requeued is not None
    assert requeued.status is jobqueue.JobStatus.PENDING
    assert requeued.attempts == 1
    assert requeued.locked_by is None
    assert requeued.run_at == retryable.run_at, "it keeps its place in line"
    assert requeued.error is not None
    assert "dead" in requeued.error
    gone = await queue.get_job_status(exhausted.id)
    assert gone is not None
    assert gone.status is jobqueue.JobStatus.FAILED
    still = await queue.get_job_status(fresh.id)
    assert still is not None
    assert still.locked_by == "alive"


async def test_heartbeat_keeps_a_long_job_from_cleanup(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("t")
    await queue.claim_jobs("w", now=at(0))
    for minute in range(1, 30):
        assert await queue.heartbeat("w", [job.id], now=at(60 * minute)) == {job.id: False}
        assert await queue.cleanup_stale_locks(300, now=at(60 * minute + 1)) == 0
    assert await queue.cleanup_stale_locks(300, now=at(60 * 29 + 301)) == 1
    assert await queue.heartbeat("w", [job.id]) == {}


async def test_cleanup_rejects_a_non_positive_threshold(queue: jobqueue.Queue) -> None:
    with pytest.raises(ValueError, match="stale_threshold is 0 s, below the least allowed"):
        await queue.cleanup_stale_locks(0)


async def test_cleanup_refuses_the_seeds_milliseconds_naming_the_unit(
    queue: jobqueue.Queue,
) -> None:
    with pytest.raises(ValueError, match=r"the unit is seconds \(for 300000 ms, give 300\)"):
        await queue.cleanup_stale_locks(300_000)


# --- stats (S7) ------------------------------------------------------------------------------


async def test_stats_has_every_status_when_empty(queue: jobqueue.Queue) -> None:
    assert await queue.get_queue_stats() == {
        "pending": 0,
        "running": 0,
        "failed": 0,
        "done": 0,
        "cancelled": 0,
    }
    assert await queue.get_queue_stats_by_type() == {}


async def test_stats_follow_every_change_by_type_and_queue(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(5))
    await queue.enqueue_jobs(jobqueue.NewJob("b", queue="other") for _ in range(3))
    first, second, _third = await queue.claim_jobs("w", limit=3)
    await queue.complete_job(first.id, None)
    await queue.fail_job(second.id, "x", final=True)
    await conn.execute(
        "DELETE FROM jobs WHERE type = 'b' AND status = 'pending' AND ctid IN "
        "(SELECT ctid FROM jobs WHERE type = 'b' LIMIT 1)"
    )
    assert await queue.get_queue_stats() == {
        "pending": 4,
        "running": 1,
        "failed": 1,
        "done": 1,
        "cancelled": 0,
    }
    assert await queue.get_queue_stats() == await table_counts(conn)
    assert await queue.get_queue_stats(queue="other") == {
        "pending": 2,
        "running": 0,
        "failed": 0,
        "done": 0,
        "cancelled": 0,
    }
    assert await queue.get_queue_stats(type="a") == {
        "pending": 2,
        "running": 1,
        "failed": 1,
        "done": 1,
        "cancelled": 0,
    }
    by_type = await queue.get_queue_stats_by_type()
    assert list(by_type) == ["a", "b"]
    assert by_type["b"]["pending"] == 2
    await conn.execute("TRUNCATE jobs")
    assert await queue.get_queue_stats() == producer.empty_stats()


async def test_stats_stay_exact_through_compaction(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    for _ in range(30):
        await queue.enqueue_jobs(jobqueue.NewJob("t") for _ in range(10))
    for _ in range(250):
        (job,) = await queue.claim_jobs("w")
        await queue.complete_job(job.id, None)
    cursor = await conn.execute("SELECT count(*) FROM job_counts")
    before = await cursor.fetchone()
    assert before is not None
    assert before[0] > 500
    assert await queue.get_queue_stats() == await table_counts(conn)
    cursor = await conn.execute("SELECT count(*) FROM job_counts")
    after = await cursor.fetchone()
    assert after is not None
    assert after[0] == 1
    assert await queue.get_queue_stats() == {
        "pending": 50,
        "running": 0,
        "failed": 0,
        "done": 250,
        "cancelled": 0,
    }


# --- module-level API and the sync facade ------------------------------------------------------


async def test_module_level_functions_use_database_url(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    jobqueue.configure()
    try:
        with caplog.at_level(logging.INFO, logger="jobqueue.queue"):
            job = await jobqueue.enqueue_job("parseBook", {"bookId": 1})
        assert f"[Queue] Enqueued job {job.id} (type: parseBook)" in caplog.messages
        status = await jobqueue.get_job_status(job.id)
        assert status is not None
        assert status.status == "pending"
        assert (await jobqueue.get_queue_stats())["pending"] == 1
        failed = await jobqueue.fail_job(job.id, "Error message")
        assert failed.status == "pending"
        assert failed.attempts == 1
        done = await jobqueue.complete_job(job.id, {"result": "data"})
        assert done.status == "done"
        assert await jobqueue.cleanup_stale_locks(300) == 0
        assert len(await jobqueue.enqueue_jobs([jobqueue.NewJob("x")])) == 1
    finally:
        await jobqueue.close_default_queue()


async def test_the_first_calls_may_come_at_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web app's first burst: concurrent first calls share one opening of the default
    queue, and none of them meets a pool that is not open yet."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    jobqueue.configure()
    try:
        jobs = await asyncio.gather(
            *(jobqueue.enqueue_job("jobqueue.noop", {"i": i}) for i in range(8)),
            jobqueue.get_queue_stats(),
        )
        assert len({job.id for job in jobs[:8]}) == 8
        assert (await jobqueue.get_queue_stats())["pending"] == 8
    finally:
        await jobqueue.close_default_queue()


async def test_a_failed_first_open_is_tried_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    jobqueue.configure()
    try:
        failures = await asyncio.gather(
            *(jobqueue.get_queue_stats() for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(failure, psycopg.OperationalError) for failure in failures)
        monkeypatch.setenv("DATABASE_URL", database_url)
        job = await jobqueue.enqueue_job("jobqueue.noop")
        assert (await jobqueue.get_job_status(job.id)) == job
    finally:
        await jobqueue.close_default_queue()


async def test_missing_database_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(jobqueue.ConfigurationError, match="set DATABASE_URL"):
        jobqueue.Queue()


def test_sync_facade(database_url: str) -> None:
    with jobqueue.SyncQueue(database_url) as queue:
        job = queue.enqueue_job("parseBook", {"bookId": 1})
        assert queue.get_job_status(job.id) == job
        assert queue.get_queue_stats()["pending"] == 1
        assert queue.get_queue_stats_by_type()["parseBook"]["pending"] == 1
        assert queue.fail_job(job.id, "once").status == "pending"
        assert queue.complete_job(job.id, {"ok": True}).result == {"ok": True}
        assert len(queue.enqueue_jobs([jobqueue.NewJob("a"), jobqueue.NewJob("b")])) == 2
        assert queue.cleanup_stale_locks(1) == 0
        with pytest.raises(jobqueue.JobStateError):
            queue.complete_job(job.id, {})


def test_sync_facade_reports_an_unreachable_database() -> None:
    with pytest.raises(psycopg.OperationalError):
        jobqueue.SyncQueue("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


async def test_enqueue_inside_the_callers_transaction(
    queue: jobqueue.Queue, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as app:
        await app.execute("CREATE TABLE uploads (name text)")
        await app.commit()
        async with app.transaction():
            await app.execute("INSERT INTO uploads VALUES ('kept.epub')")
            kept = await queue.enqueue_job("parseBook", {"bookId": 1}, conn=app)

        async def failing_upload() -> None:
            async with app.transaction():
                await app.execute("INSERT INTO uploads VALUES ('lost.epub')")
                await queue.enqueue_jobs([jobqueue.NewJob("parseBook", {"bookId": 2})], conn=app)
                raise RuntimeError("upload failed")

        with pytest.raises(RuntimeError, match="upload failed"):
            await failing_upload()
    assert await queue.get_job_status(kept.id) is not None
    assert await queue.get_queue_stats() == {
        "pending": 1,
        "running": 0,
        "failed": 0,
        "done": 0,
        "cancelled": 0,
    }
