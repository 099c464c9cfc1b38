"""The worker loop in-process against a real PostgreSQL: S10-S13, pickup, heartbeats."""

from __future__ import annotations

import asyncio
import datetime
import time
import typing
import uuid

import prometheus_client
import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import runner, types
from jobqueue import worker as worker_module

UTC = datetime.UTC


class Payload(typing.TypedDict):
    bookId: int


@pytest.fixture
def release(registry: runner.Registry) -> asyncio.Event:
    """Registers the job type ``long``: it runs until the returned event is set, then
    returns its payload's ``result``."""
    released = asyncio.Event()

    @jobqueue.handler("long", registry=registry)
    async def long(payload: dict[str, typing.Any] | None, job: types.Job) -> typing.Any:
        await released.wait()
        return (payload or {}).get("result")

    return released


async def test_worker_runs_jobs_and_reports_state(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("double", registry=registry)
    async def double(payload: dict[str, int], job: types.Job) -> dict[str, int]:
        return {"value": payload["n"] * 2}

    jobs = await queue.enqueue_jobs(jobqueue.NewJob("double", {"n": n}) for n in range(50))
    worker = run_worker(concurrency=4)
    for job in jobs:
        done = await waiting.until_status(queue, job.id, "done")
        assert done.result == {"value": job.payload["n"] * 2}
        assert done.attempts == 1
    state = worker.state()
    assert state["is_running"] is True
    assert state["processed"] == 50
    assert state["worker_id"] == "w0"
    assert state["active_jobs"] == 0
    assert state["types"] == ["double"]


async def test_concurrency_bound_is_respected(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    running = 0
    peak = 0
    gate = asyncio.Event()

    @jobqueue.handler("gated", registry=registry)
    async def gated(payload: object, job: types.Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    await queue.enqueue_jobs(jobqueue.NewJob("gated") for _ in range(12))
    worker = run_worker(concurrency=3, poll_interval=0.05)

    async def three_running() -> bool:
        return (await queue.get_queue_stats())["running"] == 3 and worker.active_jobs == 3

    await waiting.eventually(three_running, what="three jobs running")
    assert peak == 3
    gate.set()

    async def all_done() -> bool:
        return (await queue.get_queue_stats())["done"] == 12

    await waiting.eventually(all_done, what="all jobs done")
    assert peak == 3


async def test_failures_are_retried_then_failed(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("broken", retry=jobqueue.RetryPolicy(delay=0.0), registry=registry)
    async def broken(payload: object, job: types.Job) -> None:
        raise RuntimeError(f"attempt {job.attempts} failed")

    job = await queue.enqueue_job("broken", max_attempts=3)
    worker = run_worker(poll_interval=0.05)
    failed = await waiting.until_status(queue, job.id, "failed")
    assert failed.attempts == 3
    assert failed.error == "RuntimeError: attempt 3 failed"
    assert worker.failed == 3


@pytest.mark.parametrize(("setting", "expected"), [(None, 30.0), ("7s", 7.0)])
async def test_default_retry_is_the_queues_retry_delay(
    queue: jobqueue.Queue,
    registry: runner.Registry,
    run_worker: typing.Any,
    monkeypatch: pytest.MonkeyPatch,
    setting: str | None,
    expected: float,
) -> None:
    """The seed's 30 s, or ``JOBQUEUE_RETRY_DELAY``, for handlers without a policy."""
    if setting is not None:
        monkeypatch.setenv("JOBQUEUE_RETRY_DELAY", setting)

    @jobqueue.handler("broken", registry=registry)
    async def broken(payload: object, job: types.Job) -> None:
        raise RuntimeError("no")

    job = await queue.enqueue_job("broken")
    run_worker()

    async def retried() -> types.Job | None:
        found = await waiting.job_status(queue, job.id)
        return found if found.status == "pending" and found.attempts == 1 else None

    again = await waiting.eventually(retried, what="job re-queued")
    delay = (again.run_at - again.updated_at).total_seconds()
    assert delay == pytest.approx(expected, abs=0.01)


async def test_invalid_payload_fails_at_once(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("typed", registry=registry)
    async def typed(payload: Payload, job: types.Job) -> None:
        return None

    job = await queue.enqueue_job("typed", {"book": 1}, max_attempts=5)
    run_worker()
    failed = await waiting.until_status(queue, job.id, "failed")
    assert failed.attempts == 1
    assert failed.error == "invalid payload: PayloadError: payload is missing bookId (Payload)"


async def test_follow_ups_are_enqueued_with_the_completion(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("parent", registry=registry)
    async def parent(payload: dict[str, int], job: types.Job) -> jobqueue.Completion:
        children = [jobqueue.NewJob("child", {"parent": str(job.id)}) for _ in range(2)]
        return jobqueue.Completion({"children": 2}, enqueue=children)

    @jobqueue.handler("child", registry=registry)
    async def child(payload: dict[str, str], job: types.Job) -> str:
        return payload["parent"]

    job = await queue.enqueue_job("parent")
    run_worker(concurrency=2)

    async def children_done() -> bool:
        return (await queue.get_queue_stats_by_type()).get("child", {}).get("done") == 2

    await waiting.eventually(children_done, what="children done")
    assert (await waiting.job_status(queue, job.id)).result == {"children": 2}


async def test_follow_ups_are_not_enqueued_when_the_job_was_lost(
    queue: jobqueue.Queue, database_url: str
) -> None:
    job = await queue.enqueue_job("parent")
    await queue.claim_jobs("old")
    await queue.cleanup_stale_locks(1, now=datetime.datetime.now(UTC) + datetime.timedelta(1))
    with pytest.raises(jobqueue.JobStateError):
        await queue.complete_job(job.id, {}, enqueue=[jobqueue.NewJob("child")], worker_id="old")
    assert (await queue.get_queue_stats_by_type()).get("child") is None


async def test_notify_wakes_an_idle_worker_at_once(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    finished: dict[uuid.UUID, float] = {}

    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: object, job: types.Job) -> None:
        finished[job.id] = time.monotonic()

    worker = run_worker(poll_interval=600)  # a poll would come only after 10 minutes

    async def idle_and_listening() -> bool:
        return worker.listening and worker.last_claim_ok

    await waiting.eventually(idle_and_listening, what="worker listening")
    latencies = []
    for _ in range(5):
        enqueued = time.monotonic()
        job = await queue.enqueue_job("quick")
        await waiting.eventually(
            lambda job_id=job.id: _async_true(job_id in finished), what="pickup"
        )
        latencies.append(finished[job.id] - enqueued)
    assert max(latencies) < 5.0, latencies


async def _async_true(value: bool) -> bool:
    return value


async def test_listen_connection_loss_is_noticed_and_re_listened(
    queue: jobqueue.Queue,
    registry: runner.Registry,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    done: set[uuid.UUID] = set()

    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: object, job: types.Job) -> None:
        done.add(job.id)

    worker = run_worker(poll_interval=600)

    async def listener_pid() -> int | None:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND datname = current_database()",
            [f"jobqueue-listen {worker.worker_id}"],
        )
        row = await cursor.fetchone()
        return row[0] if row and worker.listening else None

    first = await waiting.eventually(listener_pid, what="listener connected")
    await conn.execute("SELECT pg_terminate_backend(%s)", [first])

    async def new_listener() -> int | None:
        pid = await listener_pid()
        return pid if pid not in (None, first) else None

    await waiting.eventually(new_listener, what="listener reconnected")
    job = await queue.enqueue_job("quick")
    await waiting.eventually(lambda: _async_true(job.id in done), what="pickup after re-listen")


async def test_polling_without_listen(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: object, job: types.Job) -> None:
        return None

    worker = run_worker(listen=False, poll_interval=0.1)
    job = await queue.enqueue_job("quick")
    await waiting.until_status(queue, job.id, "done")
    assert worker.listening is False


async def test_delayed_job_starts_on_time(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    started: dict[str, datetime.datetime] = {}

    @jobqueue.handler("later", registry=registry)
    async def later(payload: object, job: types.Job) -> None:
        started["at"] = datetime.datetime.now(UTC)

    worker = run_worker(poll_interval=600)  # a poll would come only after 10 minutes

    async def idle_and_listening() -> bool:
        return worker.listening and worker.last_claim_ok

    await waiting.eventually(idle_and_listening, what="worker idle")
    due = datetime.datetime.now(UTC) + datetime.timedelta(seconds=1)
    job = await queue.enqueue_job("later", run_at=due)
    await waiting.until_status(queue, job.id, "done")
    assert due <= started["at"] < due + datetime.timedelta(seconds=3)


async def test_a_polling_worker_finds_delayed_jobs_and_starts_them_on_time(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    started: dict[str, datetime.datetime] = {}

    @jobqueue.handler("later", registry=registry)
    async def later(payload: object, job: types.Job) -> None:
        started["at"] = datetime.datetime.now(UTC)

    due = datetime.datetime.now(UTC) + datetime.timedelta(seconds=1)
    job = await queue.enqueue_job("later", run_at=due)
    run_worker(listen=False, poll_interval=600)  # its first claim finds the job not due
    await waiting.until_status(queue, job.id, "done")
    assert due <= started["at"] < due + datetime.timedelta(seconds=3)


async def test_worker_claims_only_types_it_has_handlers_for(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    @jobqueue.handler("mine", registry=registry)
    async def mine(payload: object, job: types.Job) -> None:
        return None

    other = await queue.enqueue_job("theirs")
    ours = await queue.enqueue_job("mine")
    run_worker()
    await waiting.until_status(queue, ours.id, "done")
    assert (await waiting.job_status(queue, other.id)).status == "pending"
    with pytest.raises(ValueError, match="no handler registered for job types: theirs"):
        worker_module.Worker(queue, worker_module.WorkerConfig(types=["theirs"]), registry=registry)


async def test_heartbeats_keep_a_long_job_safe_from_cleanup(
    queue: jobqueue.Queue, release: asyncio.Event, run_worker: typing.Any
) -> None:
    job = await queue.enqueue_job("long", {"result": "finished"})
    run_worker(heartbeat_interval=0.05)
    claimed = await waiting.until_status(queue, job.id, "running")
    assert claimed.locked_at is not None

    async def heartbeat_moved_on() -> bool:
        current = await waiting.job_status(queue, job.id)
        assert current.heartbeat_at is not None
        assert claimed.locked_at is not None
        return (current.heartbeat_at - claimed.locked_at).total_seconds() > 1.0

    await waiting.eventually(heartbeat_moved_on, what="heartbeats")
    # The lock is over a second old, but the heartbeat is fresh: cleanup leaves it alone.
    assert await queue.cleanup_stale_locks(1) == 0
    release.set()
    assert (await waiting.until_status(queue, job.id, "done")).result == "finished"


async def test_a_lost_job_outcome_is_dropped(
    queue: jobqueue.Queue, release: asyncio.Event, run_worker: typing.Any
) -> None:
    job = await queue.enqueue_job("long", {"result": "late"})
    worker = run_worker(concurrency=1, heartbeat_interval=60, stale_threshold=3600)
    await waiting.until_status(queue, job.id, "running")
    later = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    assert await queue.cleanup_stale_locks(60, now=later) == 1
    await queue.claim_jobs("another", now=later)
    release.set()

    async def outcome_dropped() -> bool:
        return not worker._held

    await waiting.eventually(outcome_dropped, what="outcome handled")
    current = await waiting.job_status(queue, job.id)
    assert current.status == "running"
    assert current.locked_by == "another"
    assert current.result is None


def _lost(job_type: str) -> float:
    """The process's count of lost ``job_type`` jobs (workers made by ``run_worker`` report
    to the default registry)."""
    found = prometheus_client.REGISTRY.get_sample_value(
        "jobqueue_worker_jobs_total", {"queue": "default", "type": job_type, "outcome": "lost"}
    )
    return found or 0.0


async def test_a_job_rescued_while_it_runs_is_stopped_and_counted_lost(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    # A worker that went silent (a stopped process, a long pause) and comes back to find its
    # job rescued: its next heartbeat stops the job, which the metrics count as lost.
    started = asyncio.Event()

    @jobqueue.handler("held", registry=registry)
    async def held(payload: object, job: types.Job) -> None:
        started.set()
        await asyncio.Event().wait()  # until stopped

    before = _lost("held")
    job = await queue.enqueue_job("held")
    run_worker(concurrency=1, heartbeat_interval=0.2, stale_threshold=3600)
    await waiting.until_status(queue, job.id, "running")
    later = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    assert await queue.cleanup_stale_locks(60, now=later) == 1

    async def counted() -> bool:
        return _lost("held") > before

    # Then the same worker, free again, claims the job anew: no other sign to wait for.
    await waiting.eventually(counted, what="the rescued job counted lost")
    assert _lost("held") == before + 1


async def test_grace_timeout_hands_running_jobs_back(
    queue: jobqueue.Queue, release: asyncio.Event, run_worker: typing.Any
) -> None:
    job = await queue.enqueue_job("long")  # never released
    worker = run_worker(grace_timeout=0.2)
    await waiting.until_status(queue, job.id, "running")
    worker.stop()
    await asyncio.wait_for(worker.wait_stopped(), timeout=15)
    back = await waiting.job_status(queue, job.id)
    assert back.status == "pending"
    assert back.attempts == 0
    assert back.locked_by is None


async def test_stop_waits_for_running_jobs(
    queue: jobqueue.Queue, release: asyncio.Event, run_worker: typing.Any
) -> None:
    job = await queue.enqueue_job("long", {"result": "done properly"})
    later = await queue.enqueue_job("long")
    worker = run_worker(concurrency=1)
    await waiting.until_status(queue, job.id, "running")
    worker.stop()
    stopped = asyncio.create_task(worker.wait_stopped())
    await asyncio.sleep(0)
    assert not stopped.done()
    release.set()
    await asyncio.wait_for(stopped, timeout=15)
    assert (await waiting.job_status(queue, job.id)).result == "done properly"
    assert (await waiting.job_status(queue, later.id)).status == "pending"


async def test_module_level_worker_api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert jobqueue.get_worker_state()["is_running"] is False
    worker = jobqueue.init_job_system(
        poll_interval=0.1, concurrency=2, worker_id="seed-worker", handle_signals=False
    )
    try:
        async with jobqueue.Queue(database_url) as queue:
            job = await queue.enqueue_job("jobqueue.noop")
            await waiting.until_status(queue, job.id, "done")
        state = jobqueue.get_worker_state()
        assert state["is_running"] is True
        assert state["worker_id"] == "seed-worker"
        assert state["processed"] == 1
        assert state["concurrency"] == 2
        with pytest.raises(RuntimeError, match="already running"):
            jobqueue.start_worker()
    finally:
        await jobqueue.stop_worker()
    assert worker.state()["is_running"] is False
    assert jobqueue.get_worker_state()["is_running"] is False


async def test_workers_fold_the_count_deltas_without_readers(
    queue: jobqueue.Queue,
    registry: runner.Registry,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: object, job: types.Job) -> None:
        return None

    for _ in range(20):
        await queue.enqueue_job("quick")
    run_worker(concurrency=1, stats_interval=0.05)

    async def folded() -> bool:
        cursor = await conn.execute("SELECT count(*), sum(done) FROM job_counts")
        return await cursor.fetchone() == (1, 20)

    await waiting.eventually(folded, what="deltas folded to one row")


async def test_no_listen_workers_use_no_prepared_statements(database_url: str) -> None:
    """PgBouncer in transaction mode cannot keep prepared statements between transactions."""
    for listen, expected in ((False, None), (True, 5)):
        config = worker_module.WorkerConfig(listen=listen, types=["jobqueue.noop"])
        registry = runner.Registry()
        jobqueue.register_all_handlers(registry)
        worker = worker_module.make_worker(config, database_url=database_url, registry=registry)
        async with worker.queue, worker.queue.pool.connection() as conn:
            assert conn.prepare_threshold == expected


async def test_a_busy_worker_stays_healthy(
    queue: jobqueue.Queue, release: asyncio.Event, run_worker: typing.Any
) -> None:
    """All slots busy with long jobs: the supervisor still ticks, so liveness holds."""
    job = await queue.enqueue_job("long")
    worker = run_worker(concurrency=1, poll_interval=0.05)
    await waiting.until_status(queue, job.id, "running")
    busy_since = worker.last_tick

    async def ticked_while_busy() -> bool:
        return worker.last_tick > busy_since + 0.2 and worker.active_jobs == 1

    await waiting.eventually(ticked_while_busy, what="supervisor ticks while busy")
    assert worker.healthy() == (True, "ok")
    release.set()
