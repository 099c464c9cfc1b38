"""Job control (issue 21): list, cancel, retry, delete, on a real PostgreSQL and real
in-process workers, with the races that matter: a cancel while the claim happens, a cancel
during the outcome write, a cancel a worker misses on LISTEN."""

from __future__ import annotations

import asyncio
import datetime
import threading
import typing
import uuid

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import control, runner, sql, types

UTC = datetime.UTC
T0 = datetime.datetime(2030, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


async def table_counts(conn: psycopg.AsyncConnection[typing.Any]) -> dict[str, int]:
    cursor = await conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
    counts = {status.value: 0 for status in jobqueue.JobStatus}
    counts.update(dict(await cursor.fetchall()))
    return counts


# --- cancel ------------------------------------------------------------------------------------


async def test_a_pending_job_is_cancelled_at_once_and_never_claimed(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    job = await queue.enqueue_job("a", {"n": 1})
    cancelled = await queue.cancel_job(job.id, reason="not needed")
    assert cancelled.status is jobqueue.JobStatus.CANCELLED
    assert cancelled.error == "not needed"
    assert cancelled.cancel_requested_at is not None
    assert await queue.claim_jobs("w", limit=10) == []
    stats = await queue.get_queue_stats()
    assert stats == {"pending": 0, "running": 0, "failed": 0, "done": 0, "cancelled": 1}
    assert stats == await table_counts(conn)
    depth = await jobqueue.queue_depth(queue)
    assert [(row.ready, row.cancelled) for row in depth] == [(0, 1)]
    # Cancelled is terminal: no outcome may be written over it.
    with pytest.raises(jobqueue.JobStateError, match="it is cancelled"):
        await queue.complete_job(job.id, {})
    # Cancelling again is no error: the job is as it was.
    assert await queue.cancel_job(job.id) == cancelled
    with pytest.raises(jobqueue.JobNotFoundError):
        await queue.cancel_job(uuid.uuid4())


async def test_a_finished_job_cannot_be_cancelled(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("a")
    await queue.complete_job(job.id, 1)
    with pytest.raises(jobqueue.JobStateError, match="it is done"):
        await queue.cancel_job(job.id)


async def test_a_running_job_is_asked_and_ends_cancelled_with_its_outcome(
    queue: jobqueue.Queue,
) -> None:
    """A running job keeps its lock until its worker lets go; whatever that worker then
    writes (done, a retryable failure, a release at shutdown) makes it cancelled, and a
    completion's follow-ups are dropped."""
    jobs = await queue.enqueue_jobs([jobqueue.NewJob("a", {"n": n}) for n in range(4)])
    claimed = await queue.claim_jobs("w", limit=4)
    assert len(claimed) == 4
    asked = await queue.cancel_jobs(jobqueue.JobFilter(ids=[job.id for job in jobs]))
    assert {job.status for job in asked} == {jobqueue.JobStatus.RUNNING}
    assert all(job.cancel_requested_at is not None and job.locked_by == "w" for job in asked)
    held = await queue.heartbeat("w", [job.id for job in jobs])
    assert held == {job.id: True for job in jobs}
    # Asking again is no error, and changes nothing.
    again = await queue.cancel_job(jobs[0].id)
    assert again.cancel_requested_at == asked[0].cancel_requested_at

    done = await queue.complete_job(
        jobs[0].id, {"r": 1}, enqueue=[jobqueue.NewJob("follow-up")], worker_id="w"
    )
    assert done.status is jobqueue.JobStatus.CANCELLED
    assert await queue.complete_jobs("w", [(jobs[1].id, None)]) == {jobs[1].id}
    failed = await queue.fail_job(jobs[2].id, "boom", worker_id="w")
    assert failed.status is jobqueue.JobStatus.CANCELLED
    assert failed.run_at == jobs[2].run_at  # not scheduled for a retry
    released = await queue.release_jobs("w", [jobs[3].id])
    assert [job.status for job in released] == [jobqueue.JobStatus.CANCELLED]
    stats = await queue.get_queue_stats()
    assert stats["cancelled"] == 4
    assert stats["pending"] == 0  # the follow-up was not enqueued
    assert (await queue.get_job_status(jobs[1].id)) is not None
    assert (await waiting.job_status(queue, jobs[1].id)).status == "cancelled"


async def test_a_cancel_requested_job_of_a_dead_worker_is_rescued_as_cancelled(
    queue: jobqueue.Queue,
) -> None:
    job = await queue.enqueue_job("a", now=at(0))
    await queue.claim_jobs("dead", now=at(0))
    await queue.cancel_job(job.id, now=at(1))
    rescued = await queue.rescue_stale_jobs(60, now=at(3600))
    assert [(found.id, found.status) for found in rescued] == [(job.id, "cancelled")]
    assert await queue.claim_jobs("w", now=at(3601)) == []


async def test_a_cancel_waits_for_a_claim_in_flight_and_asks_the_claimer(
    queue: jobqueue.Queue, database_url: str, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    """The claim holds the row when the cancel comes: the cancel waits for it, then sees a
    running job and asks its worker to stop, instead of cancelling a job that now runs."""
    job = await queue.enqueue_job("a")
    claimer = await psycopg.AsyncConnection.connect(database_url)
    async with claimer:
        await claimer.execute(
            "UPDATE jobs SET status = 'running', locked_by = 'w', locked_at = now(),"
            " heartbeat_at = now(), attempts = attempts + 1 WHERE id = %s",
            [job.id],
        )
        cancelling = asyncio.create_task(queue.cancel_job(job.id))

        async def cancel_waits_on_the_lock() -> bool:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            row = await cursor.fetchone()
            return bool(row and row[0])

        await waiting.eventually(cancel_waits_on_the_lock, what="the cancel waiting")
        await claimer.commit()
    asked = await cancelling
    assert asked.status is jobqueue.JobStatus.RUNNING
    assert asked.cancel_requested_at is not None
    assert (await queue.complete_job(job.id, 1, worker_id="w")).status == "cancelled"


async def test_an_outcome_written_first_wins_over_a_later_cancel(
    queue: jobqueue.Queue, database_url: str
) -> None:
    """The outcome write holds the row when the cancel comes: the job is done, and the
    cancel, waiting for it, then finds a finished job and says so."""
    job = await queue.enqueue_job("a")
    await queue.claim_jobs("w")
    writer = await psycopg.AsyncConnection.connect(database_url)
    async with writer, writer.transaction():
        await writer.execute(
            "UPDATE jobs SET status = 'done', locked_by = NULL WHERE id = %s", [job.id]
        )
        cancelling = asyncio.create_task(queue.cancel_job(job.id))
        done, _ = await asyncio.wait({cancelling}, timeout=0.2)
        assert not done, "the cancel did not wait for the row"
    with pytest.raises(jobqueue.JobStateError, match="it is done"):
        await cancelling


# --- cancel, on real workers ------------------------------------------------------------------


async def test_an_async_handler_is_cancelled_through_notify(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    started = asyncio.Event()
    seen: list[str] = []

    @jobqueue.handler("slow", registry=registry)
    async def slow(payload: object, job: jobqueue.RunningJob) -> jobqueue.Completion:
        started.set()
        try:
            await asyncio.Event().wait()  # forever, unless cancelled
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return jobqueue.Completion(None, enqueue=[jobqueue.NewJob("never")])

    # Heartbeats far apart: only the NOTIFY can bring the request in time.
    worker = run_worker(heartbeat_interval=60, stale_threshold=600)
    await waiting.until(lambda: worker.listening, what="LISTEN")
    job = await queue.enqueue_job("slow")
    await asyncio.wait_for(started.wait(), 15)
    await queue.cancel_job(job.id)
    ended = await waiting.until_status(queue, job.id, "cancelled", timeout=5)
    assert seen == ["cancelled"]
    assert ended.error == "cancelled while running"
    assert ended.attempts == 1
    assert ended.locked_by is None
    assert (await queue.get_queue_stats())["pending"] == 0
    assert worker.state()["active_jobs"] == 0


async def test_a_sync_handler_sees_the_flag_and_its_result_still_ends_cancelled(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    started = threading.Event()

    class Polling:
        type = "polling"

        def handle(self, payload: object, job: jobqueue.RunningJob) -> str:
            started.set()
            while not job.cancel_requested():
                threading.Event().wait(0.01)
            return "stopped early"

    registry.register(Polling())
    run_worker(heartbeat_interval=60, stale_threshold=600)
    job = await queue.enqueue_job("polling")
    await asyncio.to_thread(started.wait, 15)
    await queue.cancel_job(job.id)
    ended = await waiting.until_status(queue, job.id, "cancelled", timeout=5)
    assert ended.result == "stopped early"  # what the run returned is kept


async def test_a_cancel_reaches_a_worker_without_listen_by_its_heartbeat(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    started = asyncio.Event()

    @jobqueue.handler("slow", registry=registry)
    async def slow(payload: object, job: jobqueue.RunningJob) -> None:
        started.set()
        await asyncio.Event().wait()

    run_worker(listen=False, heartbeat_interval=0.1, stale_threshold=60)
    job = await queue.enqueue_job("slow")
    await asyncio.wait_for(started.wait(), 15)
    await queue.cancel_job(job.id)
    await waiting.until_status(queue, job.id, "cancelled", timeout=5)


async def test_a_handler_that_ignores_the_cancel_is_let_go_after_the_grace(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    started = asyncio.Event()
    finish = asyncio.Event()

    @jobqueue.handler("stubborn", registry=registry)
    async def stubborn(payload: object, job: jobqueue.RunningJob) -> None:
        started.set()
        while not finish.is_set():
            try:
                await finish.wait()
            except asyncio.CancelledError:
                continue  # swallowed: a badly written handler

    worker = run_worker(heartbeat_interval=60, stale_threshold=600, cancel_grace=0.2)
    job = await queue.enqueue_job("stubborn")
    try:
        await asyncio.wait_for(started.wait(), 15)
        await queue.cancel_job(job.id)
        ended = await waiting.until_status(queue, job.id, "cancelled", timeout=10)
        assert ended.locked_by is None
        await waiting.until(lambda: worker.active_jobs == 0, what="the slot freed")
    finally:
        finish.set()


# --- retry -------------------------------------------------------------------------------------


async def test_retry_puts_a_failed_job_back_keeping_its_attempts_and_error(
    queue: jobqueue.Queue,
) -> None:
    job = await queue.enqueue_job("a", max_attempts=1, now=at(0))
    await queue.claim_jobs("w", now=at(0))
    failed = await queue.fail_job(job.id, "disk full", worker_id="w", now=at(1))
    assert failed.status is jobqueue.JobStatus.FAILED
    retried = await queue.retry_job(job.id, now=at(10))
    assert retried.status is jobqueue.JobStatus.PENDING
    assert (retried.attempts, retried.max_attempts) == (1, 2)
    assert retried.error == "disk full"
    assert retried.run_at == at(10)
    claimed = await queue.claim_jobs("w", now=at(11))
    assert [c.id for c in claimed] == [job.id]
    assert claimed[0].attempts == 2
    with pytest.raises(jobqueue.JobStateError, match=r"cannot retry job .* it is running"):
        await queue.retry_job(job.id)
    with pytest.raises(jobqueue.JobNotFoundError):
        await queue.retry_job(uuid.uuid4())


async def test_retry_by_filter_takes_failed_and_cancelled_only(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    jobs = await queue.enqueue_jobs([jobqueue.NewJob("a", {"n": n}) for n in range(6)])
    await queue.cancel_jobs(jobqueue.JobFilter(ids=[jobs[0].id, jobs[1].id]))
    for job in jobs[2:4]:
        await queue.fail_job(job.id, "x", final=True)
    await queue.complete_job(jobs[4].id, 1)
    retried = await queue.retry_jobs(jobqueue.JobFilter(types=["a"]), batch_size=1)
    assert sorted(job.id for job in retried) == sorted(job.id for job in jobs[:4])
    assert await queue.get_queue_stats() == await table_counts(conn)
    assert (await queue.get_queue_stats())["pending"] == 5


# --- delete ------------------------------------------------------------------------------------


async def test_delete_removes_finished_jobs_only_and_keeps_the_counts(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    jobs = await queue.enqueue_jobs([jobqueue.NewJob("a", {"n": n}) for n in range(7)])
    await queue.complete_job(jobs[0].id, 1)
    await queue.fail_job(jobs[1].id, "x", final=True)
    await queue.cancel_job(jobs[2].id)
    await queue.claim_jobs("w", limit=1)  # jobs[3] runs
    deleted = await queue.delete_jobs(jobqueue.JobFilter(), batch_size=2)
    assert deleted == 3
    left = {job.id for job in await queue.list_jobs()}
    assert left == {job.id for job in jobs[3:]}
    assert await queue.get_queue_stats() == await table_counts(conn)
    assert await queue.delete_jobs(jobqueue.JobFilter(ids=[jobs[3].id])) == 0


# --- list --------------------------------------------------------------------------------------


async def test_list_filters_by_every_field(queue: jobqueue.Queue) -> None:
    book = await queue.enqueue_job("parseBook", {"bookId": 7, "tags": ["a", "b"]}, now=at(0))
    other = await queue.enqueue_job("parseBook", {"bookId": 8}, queue="other", now=at(100))
    embed = await queue.enqueue_job("embedBook", {"bookId": 7}, now=at(200))
    await queue.fail_job(embed.id, "Timeout talking to the Embedder", final=True)

    async def ids(**fields: typing.Any) -> list[uuid.UUID]:
        return [job.id for job in await queue.list_jobs(jobqueue.JobFilter(**fields))]

    assert await ids() == [embed.id, other.id, book.id]  # newest first
    assert await ids(statuses=["failed"]) == [embed.id]
    assert await ids(statuses=[jobqueue.JobStatus.PENDING]) == [other.id, book.id]
    assert await ids(types=["parseBook"], queue="default") == [book.id]
    # created_at is the database's clock at enqueue: the bounds are those the jobs got.
    assert await ids(created_after=other.created_at, created_before=embed.created_at) == [other.id]
    assert await ids(error_contains="embedder") == [embed.id]
    assert await ids(payload_contains={"bookId": 7}) == [embed.id, book.id]
    assert await ids(payload_contains={"tags": ["b"]}) == [book.id]
    assert await ids(ids=[book.id, other.id], queue="other") == [other.id]
    oldest = await queue.list_jobs(oldest_first=True)
    assert [job.id for job in oldest] == [book.id, other.id, embed.id]


async def test_list_pages_stay_right_while_jobs_come_and_go(queue: jobqueue.Queue) -> None:
    first = await queue.enqueue_jobs([jobqueue.NewJob("a", {"n": n}) for n in range(25)])
    pages: list[list[uuid.UUID]] = []
    after: uuid.UUID | None = None
    while True:
        page = await queue.list_jobs(after=after, limit=10)
        if not page:
            break
        pages.append([job.id for job in page])
        after = page[-1].id
        # New jobs arrive and old ones leave between pages: no page repeats or skips one
        # that was there all along.
        await queue.enqueue_job("a", {"late": True})
        await queue.complete_job(page[0].id, None)
        await queue.delete_jobs(jobqueue.JobFilter(ids=[page[0].id]))
    seen = [job_id for page in pages for job_id in page]
    assert [len(page) for page in pages] == [10, 10, 5]
    assert seen == [job.id for job in reversed(first)]


async def test_a_bad_filter_is_a_clear_error(queue: jobqueue.Queue) -> None:
    with pytest.raises(ValueError, match="unknown status 'finished'"):
        await queue.list_jobs(jobqueue.JobFilter(statuses=["finished"]))
    with pytest.raises(ValueError, match="ids is empty"):
        await queue.cancel_jobs(jobqueue.JobFilter(ids=[]))
    with pytest.raises(TypeError, match="types must be a list"):
        await queue.list_jobs(jobqueue.JobFilter(types="parseBook"))
    with pytest.raises(ValueError, match="malformed job id"):
        await queue.retry_jobs(jobqueue.JobFilter(ids=["nope"]))
    with pytest.raises(ValueError, match="timezone-aware"):
        await queue.list_jobs(jobqueue.JobFilter(created_after=datetime.datetime(2030, 1, 1)))
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        await queue.list_jobs(jobqueue.JobFilter(payload_contains={"a": object()}))
    with pytest.raises(TypeError, match="filter must be a JobFilter"):
        await queue.delete_jobs({"statuses": ["done"]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be between 1 and 10000"):
        await queue.list_jobs(limit=0)


async def test_module_level_job_control(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    jobqueue.configure()
    try:
        job = await jobqueue.enqueue_job("a")
        assert (await jobqueue.cancel_job(job.id)).status == "cancelled"
        assert (await jobqueue.retry_job(job.id)).status == "pending"
        assert [found.id for found in await jobqueue.list_jobs()] == [job.id]
        assert await jobqueue.cancel_jobs(jobqueue.JobFilter(types=["a"]))
        assert await jobqueue.retry_jobs(jobqueue.JobFilter(statuses=["cancelled"]))
        await jobqueue.complete_job(job.id, None)
        assert await jobqueue.delete_jobs(jobqueue.JobFilter()) == 1
    finally:
        await jobqueue.close_default_queue()


def test_the_sync_facade_has_job_control(database_url: str) -> None:
    with jobqueue.SyncQueue(database_url) as queue:
        job = queue.enqueue_job("a")
        assert queue.cancel_job(job.id).status == "cancelled"
        assert queue.retry_job(job.id).status == "pending"
        assert [found.id for found in queue.list_jobs(types.JobFilter())] == [job.id]


# --- unique jobs -------------------------------------------------------------------------------


async def test_a_unique_key_is_held_while_its_job_is_pending_or_running(
    queue: jobqueue.Queue,
) -> None:
    first = await queue.enqueue_job("a", {"n": 1}, unique_key="book-7")
    assert not isinstance(first, jobqueue.DuplicateJob)
    assert first.unique_key == "book-7"
    again = await queue.enqueue_job("a", {"n": 2}, unique_key="book-7")
    assert isinstance(again, jobqueue.DuplicateJob)
    assert again.id == first.id
    assert again.payload == {"n": 1}
    await queue.claim_jobs("w")
    assert (await queue.enqueue_job("a", unique_key="book-7")).id == first.id  # running
    await queue.complete_job(first.id, None, worker_id="w")
    later = await queue.enqueue_job("a", {"n": 3}, unique_key="book-7")
    assert not isinstance(later, jobqueue.DuplicateJob)
    assert later.id != first.id
    # A finished holder whose key is held again cannot be retried into a second holder.
    assert await queue.retry_jobs(jobqueue.JobFilter(ids=[first.id])) == []
    stats = await queue.get_queue_stats()
    assert (stats["pending"], stats["done"]) == (1, 1)


async def test_a_unique_key_for_a_period_is_held_whatever_became_of_its_job(
    queue: jobqueue.Queue,
) -> None:
    hour = 3600.0
    first = await queue.enqueue_job("a", unique_key="daily", unique_for=hour, now=at(10))
    assert first.unique_period_start == at(0)
    await queue.complete_job(first.id, None)
    same_hour = await queue.enqueue_job("a", unique_key="daily", unique_for=hour, now=at(3599))
    assert isinstance(same_hour, jobqueue.DuplicateJob)
    assert same_hour.id == first.id
    next_hour = await queue.enqueue_job("a", unique_key="daily", unique_for=hour, now=at(3600))
    assert not isinstance(next_hour, jobqueue.DuplicateJob)
    assert next_hour.unique_period_start == at(3600)
    with pytest.raises(ValueError, match="unique_for needs a unique_key"):
        await queue.enqueue_job("a", unique_for=hour)
    with pytest.raises(ValueError, match="unique_for must be a positive"):
        await queue.enqueue_job("a", unique_key="x", unique_for=0)


async def test_many_processes_enqueueing_one_key_at_once_make_one_job(database_url: str) -> None:
    """Ten queues, each its own pool, race to enqueue the same key, alone, in batches and
    by COPY: the database keeps exactly one, and every caller gets it."""
    queues = [jobqueue.Queue(database_url) for _ in range(10)]
    for each in queues:
        await each.open()
    try:

        async def one(index: int) -> list[uuid.UUID]:
            each = queues[index]
            if index % 3 == 0:
                return [(await each.enqueue_job("a", {"i": index}, unique_key="k")).id]
            if index % 3 == 1:
                jobs = await each.enqueue_jobs(
                    [jobqueue.NewJob("a", {"i": index}, unique_key="k"), jobqueue.NewJob("b")]
                )
                return [jobs[0].id]
            ids = await each.enqueue_batch(
                [jobqueue.NewJob("b"), jobqueue.NewJob("a", {"i": index}, unique_key="k")]
            )
            return [ids[1]]

        got = await asyncio.gather(*(one(index) for index in range(10)))
        holders = {job_id for ids in got for job_id in ids}
        assert len(holders) == 1
        found = await queues[0].list_jobs(jobqueue.JobFilter(types=["a"]))
        assert [job.id for job in found] == list(holders)
        stats = await queues[0].get_queue_stats(type="b")
        assert stats["pending"] == 6  # the jobs without a key, all of them
    finally:
        for each in queues:
            await each.close()


async def test_a_batch_with_one_key_twice_makes_one_job(queue: jobqueue.Queue) -> None:
    jobs = await queue.enqueue_jobs(
        [jobqueue.NewJob("a", {"n": n}, unique_key="same") for n in range(3)]
    )
    assert not isinstance(jobs[0], jobqueue.DuplicateJob)
    assert all(isinstance(job, jobqueue.DuplicateJob) for job in jobs[1:])
    assert {job.id for job in jobs} == {jobs[0].id}
    ids = await queue.enqueue_batch([jobqueue.NewJob("a", unique_key="same")] * 2)
    assert ids == [jobs[0].id, jobs[0].id]


# --- snooze ------------------------------------------------------------------------------------


async def test_a_handler_snoozes_its_job_without_using_an_attempt(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any, clock: typing.Any
) -> None:
    runs: list[int] = []

    @jobqueue.handler("later", registry=registry)
    async def later(payload: object, job: jobqueue.RunningJob) -> object:
        runs.append(job.attempts)
        if job.attempts == 1:
            return jobqueue.Snooze(600)
        return "ran"

    job = await queue.enqueue_job("later", max_attempts=1, now=clock())
    run_worker(clock=clock, poll_interval=0.05)

    async def snoozed_once() -> jobqueue.Job | None:
        found = await waiting.job_status(queue, job.id)
        return found if found.max_attempts == 2 else None

    snoozed = await waiting.eventually(snoozed_once, what="the snooze")
    assert (snoozed.status, snoozed.attempts) == ("pending", 1)
    assert snoozed.run_at == clock() + datetime.timedelta(seconds=600)
    assert snoozed.locked_by is None
    assert runs == [1]
    clock.move(seconds=601)
    done = await waiting.until_status(queue, job.id, "done")
    assert (done.result, done.attempts) == ("ran", 2)
    assert runs == [1, 2]
    with pytest.raises(ValueError, match="snooze seconds must be a positive"):
        jobqueue.Snooze(0)


async def test_a_snooze_of_a_cancelled_job_ends_it(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("a")
    await queue.claim_jobs("w")
    await queue.cancel_job(job.id)
    snoozed = await queue.snooze_job(job.id, 60, worker_id="w")
    assert snoozed.status is jobqueue.JobStatus.CANCELLED


# --- pause -------------------------------------------------------------------------------------


async def test_a_paused_queue_gives_no_jobs_until_resumed(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: object, job: jobqueue.RunningJob) -> None:
        return None

    paused_at = await queue.pause_queue()
    assert await queue.pause_queue() == paused_at  # pausing again keeps the first time
    assert await queue.paused_queues() == {"default": paused_at}
    worker = run_worker(poll_interval=0.05)
    await waiting.until(lambda: worker.listening, what="LISTEN")
    job = await queue.enqueue_job("quick")
    other = await queue.enqueue_job("quick", queue="other")
    claimed = await queue.claim_jobs("w", queue="other")  # only that queue is paused
    assert [found.id for found in claimed] == [other.id]
    # Polled twenty times a second, the worker still claims nothing.
    claims = worker.state()["processed"]
    with pytest.raises(AssertionError, match="did not happen within"):
        await waiting.until_status(queue, job.id, "running", "done", timeout=0.5)
    assert worker.state()["processed"] == claims
    assert await queue.resume_queue() is True
    assert await queue.resume_queue() is False
    await waiting.until_status(queue, job.id, "done", timeout=5)
    assert await queue.paused_queues() == {}


async def test_pause_while_a_claim_is_in_flight(queue: jobqueue.Queue, database_url: str) -> None:
    """A claim under way when the pause commits still starts its jobs (they finish); the
    next claim gets nothing."""
    jobs = await queue.enqueue_jobs([jobqueue.NewJob("a"), jobqueue.NewJob("a")])
    claimer = await psycopg.AsyncConnection.connect(database_url)
    async with claimer:
        cursor = await claimer.execute(
            sql.query("job_claim"),
            {
                "queue": "default",
                "limit": 1,
                "types": None,
                "now": None,
                "worker_id": "w",
            },
        )
        claimed = await cursor.fetchall()
        await queue.pause_queue()
        await claimer.commit()
    assert [row[0] for row in claimed] == [jobs[0].id]
    assert await queue.claim_jobs("w", limit=10) == []
    assert (await waiting.job_status(queue, jobs[0].id)).status == "running"
    assert (await queue.complete_job(jobs[0].id, None, worker_id="w")).status == "done"
    assert await queue.next_run_at() is None  # an idle worker has nothing to wake for


async def test_the_backlog_oldest_first_is_read_from_its_own_index_page_by_page(
    queue: jobqueue.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pending and running jobs, oldest first: while the statistics say they are few, they
    are read through their partial indexes (job_list_waiting_oldest), a page at a time, in
    the order the primary key gives (as it does above that bound)."""
    tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    delayed = await queue.enqueue_jobs(jobqueue.NewJob("t", run_at=tomorrow) for _ in range(3))
    for job in await queue.enqueue_jobs(jobqueue.NewJob("t") for _ in range(20)):
        await queue.complete_job(job.id, None)
    ready = await queue.enqueue_jobs(jobqueue.NewJob("t") for _ in range(7))
    running = await queue.claim_jobs("w", limit=2)
    assert {job.id for job in running} <= {job.id for job in ready}

    async def listed(statuses: list[str]) -> list[uuid.UUID]:
        seen: list[uuid.UUID] = []
        after = None
        while True:
            page = await queue.list_jobs(
                jobqueue.JobFilter(statuses=statuses), oldest_first=True, after=after, limit=4
            )
            seen += [job.id for job in page]
            if len(page) < 4:
                return seen
            after = page[-1].id

    waiting_ids = sorted(job.id for job in [*delayed, *ready])
    pending_ids = sorted(set(waiting_ids) - {job.id for job in running})
    assert await listed(["pending", "running"]) == waiting_ids
    assert await listed(["pending"]) == pending_ids
    monkeypatch.setattr(control, "WAITING_READ_WHOLE", 0)  # the primary key's way
    assert await listed(["pending", "running"]) == waiting_ids
    assert await listed(["pending"]) == pending_ids
