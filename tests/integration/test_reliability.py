"""Faults injected into a real PostgreSQL under an in-process worker: each test is one way
a job could be lost, stranded or run twice, and shows that it is not (issue 7).

Faults come from the database itself: a read-only window (``default_transaction_read_only``
switched on for the whole server), triggers that refuse heartbeats with a chosen SQLSTATE,
rows deleted under a running job, values stored by raw SQL that Python cannot represent.
"""

from __future__ import annotations

import asyncio
import collections.abc
import datetime
import logging
import time
import typing
import uuid

import prometheus_client
import psycopg
import psycopg.conninfo
import pytest
import waiting

import jobqueue
from cluster import node
from jobqueue import runner, types
from jobqueue import worker as worker_module

UTC = datetime.UTC


class Held:
    """The job type ``held``: runs until released; counts starts, ends and cancellations."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[uuid.UUID] = []
        self.cancelled: list[uuid.UUID] = []


@pytest.fixture
def held(registry: runner.Registry) -> Held:
    state = Held()

    @jobqueue.handler("held", registry=registry)
    async def run(payload: typing.Any, job: types.Job) -> str:
        state.started.append(job.id)
        try:
            await state.release.wait()
        except asyncio.CancelledError:
            state.cancelled.append(job.id)
            raise
        return "released"

    @jobqueue.handler("quick", registry=registry)
    async def quick(payload: typing.Any, job: types.Job) -> str:
        return "ok"

    return state


@pytest.fixture
async def admin(
    server_url: str,
) -> collections.abc.AsyncIterator[psycopg.AsyncConnection[typing.Any]]:
    """A superuser session that a read-only window does not reach."""
    conn = await psycopg.AsyncConnection.connect(server_url, autocommit=True)
    async with conn:
        await conn.execute("SET default_transaction_read_only = off")
        yield conn
        await conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await conn.execute("SELECT pg_reload_conf()")


async def read_only(admin: psycopg.AsyncConnection[typing.Any], on: bool) -> None:
    if on:
        await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
    else:
        await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
    await admin.execute("SELECT pg_reload_conf()")


async def refuse_heartbeats(conn: psycopg.AsyncConnection[typing.Any], sqlstate: str) -> None:
    """From now on, every heartbeat update fails with ``sqlstate``; claims and outcomes pass."""
    await conn.execute(
        f"""
        CREATE FUNCTION refuse_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status = 'running' AND OLD.status = 'running'
               AND NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at THEN
                RAISE EXCEPTION 'heartbeat refused (injected)' USING ERRCODE = '{sqlstate}';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_heartbeat BEFORE UPDATE ON jobs
            FOR EACH ROW EXECUTE FUNCTION refuse_heartbeat();
        """
    )


async def accept_heartbeats(conn: psycopg.AsyncConnection[typing.Any]) -> None:
    await conn.execute("DROP TRIGGER refuse_heartbeat ON jobs")


# --- finding 1: a transient error must not kill the heartbeat ------------------------------------


async def test_a_read_only_window_does_not_stop_heartbeats(
    queue: jobqueue.Queue,
    held: Held,
    run_worker: typing.Any,
    admin: psycopg.AsyncConnection[typing.Any],
) -> None:
    job = await queue.enqueue_job("held")
    worker = run_worker(heartbeat_interval=0.1, stale_threshold=30, rescue_interval=0)
    await waiting.until_status(queue, job.id, "running")
    refused_before = heartbeat_errors()
    await read_only(admin, True)

    async def heartbeat_refused() -> bool:
        return heartbeat_errors() > refused_before

    await waiting.eventually(heartbeat_refused, what="a heartbeat refused")
    await read_only(admin, False)
    window_closed = datetime.datetime.now(UTC)

    async def beating_again() -> bool:
        current = await waiting.job_status(queue, job.id)
        return current.heartbeat_at is not None and current.heartbeat_at > window_closed

    await waiting.eventually(beating_again, what="heartbeats after the window")
    assert worker.failure is None
    assert worker.healthy() == (True, "ok")
    # Alive and beating: a cleanup with a threshold far below the job's age finds nothing.
    assert await queue.cleanup_stale_locks(2) == 0
    held.release.set()
    assert (await waiting.until_status(queue, job.id, "done")).attempts == 1
    assert held.started == [job.id]


def heartbeat_errors() -> float:
    """How many heartbeats the workers of this process had refused so far."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "jobqueue_worker_database_errors_total", {"queue": "default", "operation": "heartbeat"}
    )
    return value or 0.0


async def test_an_unexpected_error_in_a_background_task_stops_the_worker_cleanly(
    queue: jobqueue.Queue,
    held: Held,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    job = await queue.enqueue_job("held")
    worker = run_worker(heartbeat_interval=0.1, stale_threshold=30, rescue_interval=0)
    await waiting.until_status(queue, job.id, "running")
    await refuse_heartbeats(conn, "P0001")  # raise_exception: not a database outage
    with pytest.raises(worker_module.WorkerFailedError, match="heartbeat failed"):
        await asyncio.wait_for(run_worker.task(worker), timeout=20)
    assert worker.failure is not None
    assert "heartbeat refused (injected)" in worker.failure
    assert worker.healthy()[0] is False
    assert held.cancelled == [job.id]
    back = await waiting.job_status(queue, job.id)
    # Handed back at once, the attempt counted (a job that kills workers must still end).
    assert back.status == "pending"
    assert back.attempts == 1
    assert back.locked_by is None
    assert "heartbeat failed" in (back.error or "")


# --- finding 5 (safety half): a worker that cannot heartbeat stops its job in time -------------


async def test_a_worker_that_cannot_heartbeat_stops_its_job_before_it_could_be_rescued(
    queue: jobqueue.Queue,
    held: Held,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    job = await queue.enqueue_job("held")
    worker = run_worker(heartbeat_interval=0.1, stale_threshold=2.0, rescue_interval=0)
    claimed = await waiting.until_status(queue, job.id, "running")
    await refuse_heartbeats(conn, "25006")  # read_only_sql_transaction: transient

    async def job_stopped() -> bool:
        return held.cancelled == [job.id]

    await waiting.eventually(job_stopped, what="job stopped")
    stopped_at = datetime.datetime.now(UTC)
    last_sign = (await waiting.job_status(queue, job.id)).heartbeat_at or claimed.locked_at
    assert last_sign is not None
    # Stopped while the job was still this worker's: before a rescuer could take it.
    assert (stopped_at - last_sign).total_seconds() < 2.0
    await accept_heartbeats(conn)
    held.release.set()
    done = await waiting.until_status(queue, job.id, "done")
    assert done.attempts == 1, "each stopped run gave its attempt back: the job did not fail"
    assert worker.failure is None
    # It ran again (on the same worker, once heartbeats passed), never two runs at once:
    # every run but the last was stopped.
    assert held.started == [job.id] * (len(held.cancelled) + 1)


async def test_a_job_rescued_from_under_its_worker_and_claimed_back_never_runs_twice_there(
    queue: jobqueue.Queue,
    held: Held,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    """A frozen worker thaws after an operator rescued its job: its supervisor may claim the
    job back before its heartbeat learns the job was taken. The second claim must not start
    a second run beside the first: the run already going finishes, and its outcome settles
    the job."""
    job = await queue.enqueue_job("held")
    worker = run_worker(
        concurrency=2,
        poll_interval=0.1,
        heartbeat_interval=1.0,
        stale_threshold=60.0,
        rescue_interval=0,
    )
    await waiting.until_status(queue, job.id, "running")
    # What the operator's rescue does to a stale job, as one statement (and its NOTIFY).
    await conn.execute(
        "UPDATE jobs SET status = 'pending', locked_at = NULL, locked_by = NULL,"
        " heartbeat_at = NULL, run_at = now() WHERE id = %s",
        [job.id],
    )

    async def claimed_back() -> bool:
        again = await waiting.job_status(queue, job.id)
        return again.status == "running" and again.attempts == 2

    await waiting.eventually(claimed_back, what="the job claimed back by the same worker")
    held.release.set()
    done = await waiting.until_status(queue, job.id, "done")
    assert done.result == "released"
    assert held.started == [job.id], "the handler ran once: no second run beside the first"
    assert held.cancelled == []
    assert worker.failure is None
    assert worker.active_jobs == 0


async def test_a_synchronous_job_that_cannot_be_stopped_stops_its_worker(
    queue: jobqueue.Queue,
    registry: runner.Registry,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    import threading

    gate = threading.Event()

    @jobqueue.handler("blocking", registry=registry)
    def blocking(payload: typing.Any, job: types.Job) -> None:
        gate.wait(timeout=30)

    job = await queue.enqueue_job("blocking")
    worker = run_worker(heartbeat_interval=0.1, stale_threshold=2.0, rescue_interval=0)
    await waiting.until_status(queue, job.id, "running")
    await refuse_heartbeats(conn, "57P01")
    try:
        with pytest.raises(worker_module.WorkerFailedError, match="cannot be stopped"):
            await asyncio.wait_for(run_worker.task(worker), timeout=20)
        assert worker.handler_threads_busy()
    finally:
        gate.set()


# --- finding 2: outcomes the database refuses end the job, the writer goes on -------------------


async def test_a_job_deleted_while_it_runs_does_not_stop_the_writer(
    queue: jobqueue.Queue,
    held: Held,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    doomed = await queue.enqueue_job("held")
    worker = run_worker(concurrency=1)
    await waiting.until_status(queue, doomed.id, "running")
    await conn.execute("DELETE FROM jobs WHERE id = %s", [doomed.id])
    held.release.set()
    after = await queue.enqueue_job("quick")
    assert (await waiting.until_status(queue, after.id, "done")).result == "ok"
    assert worker.failure is None
    assert worker.healthy() == (True, "ok")


class HugeRetry:
    """A handler whose retry policy asks for a delay beyond any date."""

    type = "huge_retry"

    class retry:  # a policy object, duck-typed as RetryPolicy
        @staticmethod
        def delay_after(attempt: int) -> float:
            return 1e300

    def handle(self, payload: typing.Any, job: types.Job) -> None:
        raise RuntimeError("fails, then asks for a retry in 1e300 s")


async def test_outcomes_the_database_would_refuse_fail_the_job_readably(
    queue: jobqueue.Queue, registry: runner.Registry, run_worker: typing.Any
) -> None:
    registry.register(HugeRetry())

    @jobqueue.handler("bad_follow_up", registry=registry)
    async def bad_follow_up(payload: typing.Any, job: types.Job) -> jobqueue.Completion:
        return jobqueue.Completion("r", enqueue=[jobqueue.NewJob("next\nline")])

    @jobqueue.handler("far_follow_up", registry=registry)
    async def far_follow_up(payload: typing.Any, job: types.Job) -> jobqueue.Completion:
        far = datetime.datetime(
            9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=12))
        )
        return jobqueue.Completion("r", enqueue=[jobqueue.NewJob("quick", run_at=far)])

    huge = await queue.enqueue_job("huge_retry")
    bad = await queue.enqueue_job("bad_follow_up")
    far = await queue.enqueue_job("far_follow_up")
    worker = run_worker(concurrency=3)
    failed = await waiting.until_status(queue, huge.id, "failed")
    assert "could not record the job's outcome" in (failed.error or "")
    assert "retry_delay" in (failed.error or "")
    for job_id in (bad.id, far.id):
        refused = await waiting.until_status(queue, job_id, "failed")
        assert "invalid follow-up job" in (refused.error or "")
        assert refused.attempts == 1, "no retry: the same result would be refused again"
    assert (await queue.get_queue_stats())["pending"] == 0, "no follow-up was written"
    assert worker.failure is None


# --- findings 3 and 4: what the database holds, a worker survives -------------------------------


async def test_undecodable_payloads_fail_alone_and_the_batch_runs(
    queue: jobqueue.Queue,
    held: Held,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    healthy = await queue.enqueue_jobs(jobqueue.NewJob("quick", {"n": n}) for n in range(6))
    cursor = await conn.execute(
        """
        INSERT INTO jobs (type, payload) VALUES
            ('quick', (repeat('[', 980) || repeat(']', 980))::jsonb),
            ('quick', '{"x": 1e5000}'::jsonb)
        RETURNING id
        """
    )
    poisoned = [row[0] for row in await cursor.fetchall()]
    worker = run_worker(concurrency=8)
    for job in healthy:
        assert (await waiting.until_status(queue, job.id, "done")).result == "ok"
    for job_id in poisoned:
        failed = await waiting.until_status(queue, job_id, "failed")
        assert "payload cannot be decoded" in (failed.error or "")
        assert failed.attempts == 1
        assert isinstance(failed.payload, types.Undecodable)
    assert worker.failure is None


async def test_times_python_cannot_hold_do_not_break_workers(
    queue: jobqueue.Queue,
    held: Held,
    run_worker: typing.Any,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    cursor = await conn.execute(
        """
        INSERT INTO jobs (type, run_at) VALUES
            ('quick', '10000-01-01 11:00:00+00'),
            ('quick', '0001-01-01 00:00:00+05'),
            ('quick', '-infinity')
        RETURNING id
        """
    )
    far, ancient, minus_infinity = (row[0] for row in await cursor.fetchall())
    cursor = await conn.execute(
        "INSERT INTO jobs (type, created_at) VALUES ('quick', 'infinity') RETURNING id"
    )
    created_in_infinity = (await cursor.fetchall())[0][0]
    worker = run_worker(poll_interval=0.05)
    for job_id in (ancient, minus_infinity, created_in_infinity):
        assert (await waiting.until_status(queue, job_id, "done")).result == "ok"
    later = await queue.enqueue_job("quick")
    await waiting.until_status(queue, later.id, "done")
    waiting_far = await waiting.job_status(queue, far)
    assert waiting_far.status == "pending"
    assert waiting_far.run_at.year == 9999, "shown as the latest time Python can hold"
    assert worker.failure is None
    assert worker.healthy() == (True, "ok")


@pytest.mark.parametrize(
    "run_at",
    [
        datetime.datetime(
            9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=12))
        ),
        datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5))),
    ],
)
async def test_run_at_out_of_range_is_refused_before_anything_is_written(
    queue: jobqueue.Queue, run_at: datetime.datetime
) -> None:
    with pytest.raises(ValueError, match=r"run_at .* is out of range"):
        await queue.enqueue_job("quick", run_at=run_at)
    with pytest.raises(ValueError, match=r"run_at .* is out of range"):
        await queue.enqueue_jobs(
            [jobqueue.NewJob("quick"), jobqueue.NewJob("quick", run_at=run_at)]
        )
    assert await queue.get_queue_stats() == {
        "pending": 0,
        "running": 0,
        "failed": 0,
        "done": 0,
        "cancelled": 0,
    }


async def test_delays_and_thresholds_beyond_any_date_are_refused(queue: jobqueue.Queue) -> None:
    job = await queue.enqueue_job("quick")
    with pytest.raises(ValueError, match="retry_delay is 1e\\+30 seconds; the limit is"):
        await queue.fail_job(job.id, "boom", retry_delay=1e30)
    assert (await waiting.job_status(queue, job.id)).status == "pending"
    assert (await waiting.job_status(queue, job.id)).attempts == 0
    with pytest.raises(ValueError, match=r"stale_threshold is 1e\+18 s, above the most allowed"):
        await queue.cleanup_stale_locks(1e18)
    with pytest.raises(ValueError, match="limit is"):
        jobqueue.RetryPolicy(delay=1e12)


async def test_payloads_a_worker_could_not_decode_are_refused_at_enqueue(
    queue: jobqueue.Queue,
) -> None:
    deep: typing.Any = []
    for _ in range(980):
        deep = [deep]
    with pytest.raises(ValueError, match="nests more than 200 levels"):
        await queue.enqueue_job("quick", deep)
    circular: dict[str, typing.Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match=r"nests more than|circular"):
        await queue.enqueue_job("quick", circular)
    fine: typing.Any = []
    for _ in range(150):
        fine = [fine]
    stored = await queue.enqueue_job("quick", fine)
    assert stored.payload == fine


# --- finding 6: reading needs no write access ---------------------------------------------------


async def test_a_select_only_role_reads_stats_with_many_deltas_pending(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any], database_url: str
) -> None:
    await queue.enqueue_jobs(jobqueue.NewJob("quick") for _ in range(3))
    await conn.execute(
        "INSERT INTO job_counts (queue, type) SELECT 'default', 'quick'"
        " FROM generate_series(1, 600)"
    )
    role = f"reader_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        reader_url = psycopg.conninfo.make_conninfo(database_url, user=role)
        async with jobqueue.Queue(reader_url) as reader:
            assert (await reader.get_queue_stats())["pending"] == 3
            assert (await reader.get_queue_stats_by_type())["quick"]["pending"] == 3
        cursor = await conn.execute("SELECT count(*) FROM job_counts")
        row = await cursor.fetchone()
        assert row is not None
        assert row[0] > 500, "the reader wrote nothing"
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")


# --- finding 5: workers rescue dead workers' jobs themselves ------------------------------------


async def test_workers_rescue_stale_jobs_of_their_own_queue_without_anyone_asking(
    queue: jobqueue.Queue, held: Held, run_worker: typing.Any
) -> None:
    # Two jobs claimed by a worker that then "died" (it never heartbeats), one per queue.
    long_ago = datetime.datetime.now(UTC) - datetime.timedelta(minutes=10)
    mine = await queue.enqueue_job("quick", now=long_ago)
    other = await queue.enqueue_job("quick", queue="elsewhere", now=long_ago)
    await queue.claim_jobs("dead-worker", now=long_ago)
    await queue.claim_jobs("dead-worker", queue="elsewhere", now=long_ago)
    worker = run_worker(heartbeat_interval=0.1, stale_threshold=5, rescue_interval=0.1)
    done = await waiting.until_status(queue, mine.id, "done")
    assert done.attempts == 2
    assert worker.rescued == 1
    # Another queue's jobs are its own workers' (their threshold may differ): untouched.
    untouched = await waiting.job_status(queue, other.id)
    assert untouched.status == "running"
    assert untouched.locked_by == "dead-worker"


async def test_rescue_reports_what_it_took_and_from_whom(queue: jobqueue.Queue) -> None:
    long_ago = datetime.datetime.now(UTC) - datetime.timedelta(minutes=10)
    job = await queue.enqueue_job("quick", max_attempts=1, now=long_ago)
    await queue.claim_jobs("gone-7", now=long_ago)
    (rescued,) = await queue.rescue_stale_jobs(60)
    assert rescued.id == job.id
    assert rescued.worker_id == "gone-7"
    assert rescued.status == "failed", "out of attempts"
    assert abs((rescued.last_seen - long_ago).total_seconds()) < 1
    assert await queue.rescue_stale_jobs(60, only_one_rescuer=True) == []


# --- time as a parameter: the worker's clock moves, nobody waits ---------------------------------


async def test_a_worker_whose_clock_moved_runs_a_delayed_job_at_once(
    queue: jobqueue.Queue, held: Held, run_worker: typing.Any, clock: typing.Any
) -> None:
    later = await queue.enqueue_job("quick", run_at=clock.move(hours=1))
    clock.move(hours=1)
    run_worker(clock=clock)
    done = await waiting.until_status(queue, later.id, "done")
    assert done.updated_at == clock.at, "written at the worker's time"


async def test_a_worker_whose_clock_moved_rescues_a_silent_workers_jobs(
    queue: jobqueue.Queue, held: Held, run_worker: typing.Any, clock: typing.Any
) -> None:
    job = await queue.enqueue_job("quick")
    await queue.claim_jobs("silent-worker")  # claimed now, then never heard of again
    clock.move(seconds=301)  # past the default stale threshold of 300 s
    worker = run_worker(clock=clock, rescue_interval=0.05)
    done = await waiting.until_status(queue, job.id, "done")
    assert done.attempts == 2
    assert worker.rescued == 1


# --- the connection single enqueues keep --------------------------------------------------

_SINGLE_INSERT: typing.Final = "INSERT INTO jobs (id, type, payload, run_at"


async def _backends_last_running(conn: psycopg.AsyncConnection[typing.Any], text: str) -> list[int]:
    cursor = await conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
        ("%" + text + "%",),
    )
    return [pid for (pid,) in await cursor.fetchall()]


async def _job_count(conn: psycopg.AsyncConnection[typing.Any]) -> int:
    cursor = await conn.execute("SELECT count(*) FROM jobs")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_kept_connection_killed_costs_one_call_and_loses_no_job(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    """The server ends the connection single enqueues keep (a restart, a failover, an
    administrator): the next call fails with a connection error, as a leased connection's
    would, and writes nothing; the one after it gets a new connection. Every job whose call
    returned is stored once, and no other."""
    stored = [await queue.enqueue_job("ping")]
    (pid,) = await _backends_last_running(conn, _SINGLE_INSERT)
    await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        await queue.enqueue_job("ping")
    stored.append(await queue.enqueue_job("ping"))
    assert await _backends_last_running(conn, _SINGLE_INSERT) != [pid]
    assert await _job_count(conn) == 2
    for job in stored:
        assert await queue.get_job_status(job.id) == job


async def test_a_single_enqueue_cancelled_mid_statement_writes_nothing(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    """A caller cancelled while its INSERT waits (here on a lock): the statement is
    cancelled with it, the kept connection goes back to the pool, and the next enqueue
    works on a clean one."""
    await queue.enqueue_job("ping")  # the kept connection exists and is prepared
    async with conn.transaction():
        await conn.execute("LOCK TABLE jobs IN SHARE MODE")  # refuses inserts until commit
        stuck = asyncio.create_task(queue.enqueue_job("cancelled"))

        async def waiting_for_the_lock() -> bool:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ("%" + _SINGLE_INSERT + "%",),
            )
            return await cursor.fetchone() == (1,)

        await waiting.eventually(waiting_for_the_lock, what="the enqueue waiting on the lock")
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
    job = await queue.enqueue_job("after")
    assert await queue.get_job_status(job.id) == job
    cursor = await conn.execute("SELECT type FROM jobs ORDER BY created_at, type")
    assert [row[0] for row in await cursor.fetchall()] == ["ping", "after"]


async def test_a_listen_connection_gone_silent_is_replaced_and_no_job_waits_for_the_poll(
    queue: jobqueue.Queue,
    registry: runner.Registry,
    run_worker: typing.Any,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's LISTEN connection goes half-open (a relay in between stops passing
    anything, closing nothing: a frozen proxy, a lost NAT entry): the worker notices within
    ten seconds and listens again, and a job enqueued meanwhile starts long before the next
    poll (a minute away)."""
    ran: dict[str, float] = {}

    @jobqueue.handler("noted", registry=registry)
    async def noted(payload: dict[str, str], job: types.Job) -> None:
        ran[payload["name"]] = time.time()

    relay = node.Forwarder(("127.0.0.1", 0), node.database_address(database_url))
    host, port = relay.address
    relayed = psycopg.conninfo.make_conninfo(database_url, host=host, port=port)
    caplog.set_level(logging.INFO, logger="jobqueue.worker")

    def listens() -> list[float]:
        return [r.created for r in caplog.records if "Listening for new jobs" in r.message]

    try:
        worker = run_worker(listen_url=relayed, poll_interval=60.0)
        await waiting.eventually(lambda: _now(worker.listening), what="the worker listening")
        await queue.enqueue_job("noted", {"name": "before"})
        await waiting.eventually(lambda: _now("before" in ran), what="a job started by NOTIFY")
        relay.freeze()
        frozen_at = time.time()
        await queue.enqueue_job("noted", {"name": "during"})
        await waiting.eventually(lambda: _now(len(listens()) > 1), timeout=25, what="re-listened")
        assert listens()[-1] - frozen_at < 15  # ~10 s: two checks, a cancellation, reconnecting
        await waiting.eventually(lambda: _now("during" in ran), timeout=25, what="the next job")
        assert ran["during"] - frozen_at < 20  # not the poll's minute
    finally:
        relay.close()


async def _now(value: bool) -> bool:
    return value
