"""What operators look at (jobqueue.overview) and the audit trail (jobqueue.audit), on a
real database: the throughput counters the trigger keeps, the oldest ready job found by a
skip scan, live workers and their busy slots, counting a filter, and audit entries."""

from __future__ import annotations

import datetime
import random
import typing

import psycopg
import waiting

import jobqueue
from jobqueue import runner

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)


async def one(queue: jobqueue.Queue, name: str = "default") -> jobqueue.QueueSummary:
    (summary,) = await queue.queue_overview(name)
    return summary


async def test_enqueued_and_finished_count_each_job_once_whatever_happens_to_it(
    queue: jobqueue.Queue,
) -> None:
    jobs = await queue.enqueue_jobs(jobqueue.NewJob("t") for _ in range(6))
    await queue.enqueue_job("t")
    claimed = await queue.claim_jobs("w", limit=4)
    await queue.complete_jobs("w", [(claimed[0].id, None), (claimed[1].id, None)])
    await queue.fail_job(claimed[2].id, "boom", final=True, worker_id="w")
    await queue.fail_job(claimed[3].id, "again", worker_id="w")  # retried: not finished
    await queue.complete_job(jobs[4].id, None, enqueue=[jobqueue.NewJob("t")])  # +1 follow-up
    await queue.cancel_jobs(jobqueue.JobFilter(ids=[jobs[5].id]))
    summary = await one(queue)
    assert (summary.enqueued, summary.finished) == (8, 5)
    await queue.retry_jobs(jobqueue.JobFilter(statuses=["failed", "cancelled"]))  # takes none back
    await queue.delete_jobs(jobqueue.JobFilter(statuses=["done"]))
    await queue.compact_counts()
    summary = await one(queue)
    assert (summary.enqueued, summary.finished) == (8, 5)
    assert summary.counts == {"pending": 5, "running": 0, "failed": 0, "done": 0, "cancelled": 0}


async def test_the_oldest_ready_job_is_found_across_priorities_and_not_among_delayed_ones(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    assert (await queue.queue_overview("default", now=NOW)) == []
    rng = random.Random(7)
    due: list[datetime.datetime] = []
    for _ in range(60):
        run_at = NOW + datetime.timedelta(minutes=rng.randint(-600, 600))
        job = await queue.enqueue_job("t", run_at=run_at, priority=rng.choice([-5, 0, 3, 10]))
        due.append(job.run_at)
    await queue.enqueue_job("t", queue="other", run_at=NOW - datetime.timedelta(days=9))
    claimed = await queue.claim_jobs("w", limit=5, now=NOW)  # running: not waiting
    waiting_due = sorted(set(due) - {job.run_at for job in claimed})
    expected = min(at for at in waiting_due if at <= NOW)
    summary = await one(queue)
    found = (await queue.queue_overview("default", now=NOW))[0]
    assert found.oldest_ready_at == expected
    assert found.oldest_ready_age == (NOW - expected).total_seconds()
    assert summary.counts["pending"] == 55
    # Nothing ready: only delayed jobs wait.
    await queue.cancel_jobs(jobqueue.JobFilter(queue="default"))
    await queue.enqueue_job("t", run_at=NOW + datetime.timedelta(hours=1))
    (delayed_only,) = await queue.queue_overview("default", now=NOW)
    assert delayed_only.oldest_ready_at is None


async def test_live_workers_their_slots_and_busy_ones(queue: jobqueue.Queue) -> None:
    for name, queue_name, concurrency in (("a", "q1", 4), ("b", "q1", 2), ("c", "q2", 8)):
        await queue.announce_worker(
            name, queue=queue_name, concurrency=concurrency, started_at=NOW, forget_after=3600
        )
    await queue.enqueue_jobs(jobqueue.NewJob("t", queue="q1") for _ in range(3))
    await queue.claim_jobs("a", queue="q1", limit=2)
    await queue.claim_jobs("b", queue="q1", limit=1)
    workers = await queue.list_workers("q1")
    assert [(w.worker_id, w.concurrency, w.running) for w in workers] == [("a", 4, 2), ("b", 2, 1)]
    (q1,) = await queue.queue_overview("q1")
    assert (q1.workers, q1.slots) == (2, 6)
    await queue.forget_worker("b")
    assert [w.worker_id for w in await queue.list_workers()] == ["a", "c"]
    # A worker not seen for the stale threshold is taken for dead; for a day, forgotten.
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    assert await queue.list_workers(now=later) == []
    assert [w.worker_id for w in await queue.list_workers(now=later, stale_after=3600)] == [
        "a",
        "c",
    ]
    await queue.announce_worker(
        "d", queue="q2", concurrency=1, started_at=NOW, forget_after=60, now=later
    )
    assert [w.worker_id for w in await queue.list_workers(now=later, stale_after=86_400)] == ["d"]


async def test_a_running_worker_announces_itself_and_leaves_when_it_stops(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("noop", registry=registry)
    async def noop(payload: object, job: jobqueue.Job) -> None:
        return None

    worker = run_worker(concurrency=3, worker_id="announced")

    async def listed() -> list[jobqueue.WorkerSummary]:
        return await queue.list_workers()

    found = await waiting.eventually(listed, what="the worker listed")
    assert [(w.worker_id, w.concurrency, w.queue) for w in found] == [("announced", 3, "default")]
    worker.stop()
    await run_worker.task(worker)

    async def gone() -> bool:
        return await queue.list_workers() == []

    await waiting.eventually(gone, what="the worker gone from the list")


async def test_counting_a_filter_exactly_from_the_statistics_or_up_to_a_limit(
    queue: jobqueue.Queue,
) -> None:
    await queue.enqueue_jobs(jobqueue.NewJob("a", {"n": n}) for n in range(30))
    await queue.enqueue_jobs(jobqueue.NewJob("b", queue="q") for _ in range(5))
    assert await queue.count_jobs() == jobqueue.JobCount(35)
    assert await queue.count_jobs(jobqueue.JobFilter(types=["a"])) == jobqueue.JobCount(30)
    assert await queue.count_jobs(jobqueue.JobFilter(queue="q", statuses=["pending"])) == (
        jobqueue.JobCount(5)
    )
    assert await queue.count_jobs(jobqueue.JobFilter(statuses=["failed"])) == jobqueue.JobCount(0)
    payload = jobqueue.JobFilter(payload_contains={"n": 3})
    assert await queue.count_jobs(payload) == jobqueue.JobCount(1)
    long_ago = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    typed = jobqueue.JobFilter(types=["a"], created_after=long_ago)
    assert await queue.count_jobs(typed, limit=10) == jobqueue.JobCount(10, at_least=True)
    assert str(jobqueue.JobCount(10_000, at_least=True)) == "10,000+"


async def test_the_audit_trail_keeps_every_action_newest_first(queue: jobqueue.Queue) -> None:
    first = await queue.record_action(
        actor="ann",
        role="admin",
        action="retry",
        queue="q",
        job_filter=jobqueue.JobFilter(queue="q", statuses=["failed"], payload_contains={"a": 1}),
        jobs=3,
        detail="every failed job",
        now=NOW,
    )
    assert first.filter == {"queue": "q", "statuses": ["failed"], "payload_contains": {"a": 1}}
    assert (first.at, first.jobs) == (NOW, 3)
    for n in range(5):
        await queue.record_action(actor="bob", role="admin", action="pause", queue=f"q{n}")
    page = await queue.list_actions(limit=4)
    assert [entry.queue for entry in page] == ["q4", "q3", "q2", "q1"]
    rest = await queue.list_actions(before=page[-1].id)
    assert [entry.id for entry in rest] == [page[-1].id - 1, first.id]
    assert first.to_json()["at"] == NOW.isoformat()
