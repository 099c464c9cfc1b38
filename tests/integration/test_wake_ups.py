"""Who wakes the workers (migration 0010): a producer's own enqueues notify after their commit,
coalesced, instead of in the trigger at the commit; everything else notifies in the trigger."""

from __future__ import annotations

import collections.abc
import contextlib
import logging
import typing

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import db

pytestmark = pytest.mark.asyncio

Connection: typing.TypeAlias = psycopg.AsyncConnection[typing.Any]
MARKER = "wake-up-marker"


class Listener:
    """A connection listening on the workers' channel; ``until_marker()`` returns what
    arrived before a notification sent last, so "nothing else came" needs no waiting: the
    server delivers notifications in the order their transactions committed."""

    def __init__(self, conn: Connection, marker_conn: Connection) -> None:
        self.conn = conn
        self.marker_conn = marker_conn

    async def until_marker(self) -> list[tuple[str, int]]:
        await self.marker_conn.execute("SELECT pg_notify('jobqueue_ready', %s)", [MARKER])
        arrived: list[tuple[str, int]] = []
        async for notify in self.conn.notifies(timeout=15.0):
            if notify.payload == MARKER:
                return arrived
            arrived.append((notify.payload, notify.pid))
        raise AssertionError(f"the marker did not arrive within 15 s; before it: {arrived}")


@pytest.fixture
async def listener(database_url: str) -> collections.abc.AsyncIterator[Listener]:
    async with await db.connect(database_url) as conn, await db.connect(database_url) as other:
        await conn.execute("LISTEN jobqueue_ready")
        yield Listener(conn, other)


async def test_the_trigger_leaves_the_notification_to_a_producer_that_says_so(
    conn: Connection, listener: Listener
) -> None:
    insert = "INSERT INTO jobs (type, queue) VALUES ('t', %s)"
    async with conn.transaction():
        await conn.execute("SELECT set_config('jobqueue.wake_up', 'producer', true)")
        await conn.execute(insert, ["quiet"])
    await conn.execute(insert, ["loud"])  # the setting ended with its transaction
    async with conn.transaction():
        await conn.execute("SELECT set_config('jobqueue.wake_up', 'commit', true)")
        await conn.execute(insert, ["told"])
    pid = conn.info.backend_pid
    assert await listener.until_marker() == [("loud", pid), ("told", pid)]


async def test_an_enqueue_in_the_applications_transaction_wakes_at_its_commit(
    database_url: str, listener: Listener
) -> None:
    async with jobqueue.Queue(database_url) as queue, await db.connect(database_url) as app:
        async with app.transaction():
            await queue.enqueue_job("t", queue="four", conn=app)
            await queue.enqueue_jobs([jobqueue.NewJob("t", queue="five")], conn=app)
            await queue.enqueue_job("t", queue="six", unique_key="k", conn=app)
            assert await listener.until_marker() == []
        pid = app.info.backend_pid
        assert await listener.until_marker() == [("four", pid), ("five", pid), ("six", pid)]


async def test_each_way_a_producer_enqueues_wakes_once_after_its_commit(
    database_url: str, listener: Listener
) -> None:
    enqueues: list[tuple[str, collections.abc.Callable[[jobqueue.Queue], typing.Any]]] = [
        ("one", lambda queue: queue.enqueue_job("t", queue="one")),
        ("many", lambda queue: queue.enqueue_jobs([jobqueue.NewJob("t", queue="many")] * 2)),
        ("unique", lambda queue: queue.enqueue_job("t", queue="unique", unique_key="k")),
        (
            "uniques",
            lambda queue: queue.enqueue_jobs(
                [jobqueue.NewJob("t", queue="uniques", unique_key="k")]
            ),
        ),
    ]
    async with jobqueue.Queue(database_url) as queue:
        for name, enqueue in enqueues:
            await enqueue(queue)
            await queue._wake_ups.flush()
            # One notification, not two: the trigger sent none in the enqueue's commit.
            assert [queue_name for queue_name, _ in await listener.until_marker()] == [name]


@contextlib.asynccontextmanager
async def notifier_held(queue: jobqueue.Queue) -> collections.abc.AsyncIterator[None]:
    """The queue's pool (of two, one of them its kept connection) empty, so its wake-up
    waits for a connection until the block ends."""
    await queue.enqueue_job("t", queue="warm-up")  # the kept connection taken
    await queue._wake_ups.flush()
    async with db.Lease(queue.pool):
        yield


async def test_wake_ups_are_coalesced_while_one_is_sent(
    database_url: str, listener: Listener
) -> None:
    async with jobqueue.Queue(database_url, pool_max_size=2) as queue:
        async with notifier_held(queue):
            await queue.enqueue_job("t", queue="q1")
            await waiting.until(
                lambda: queue.pool.get_stats().get("requests_waiting", 0) == 1,
                what="the wake-up waiting for a connection",
            )
            for name in ("q2", "q3", "q2", "q3", "q2"):
                await queue.enqueue_job("t", queue=name)
        await queue._wake_ups.flush()
        async with db.Lease(queue.pool) as conn:
            cursor = await conn.execute("SELECT count(*) FROM jobs WHERE queue LIKE 'q_'")
            assert await cursor.fetchone() == (6,)
    # Six commits, two notifications (none from the trigger): q1's, then one statement for
    # both of the others.
    assert [name for name, _ in await listener.until_marker()] == ["warm-up", "q1", "q2", "q3"]


async def test_closing_a_producer_sends_its_last_wake_ups_first(
    database_url: str, listener: Listener
) -> None:
    queue = await jobqueue.Queue(database_url).open()
    await queue.enqueue_job("t", queue="last")
    await queue.close()
    assert [name for name, _ in await listener.until_marker()] == ["last"]


async def test_a_wake_up_that_fails_is_logged_and_the_job_is_kept(
    database_url: str, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobqueue.queue")
    async with jobqueue.Queue(database_url, pool_max_size=2, pool_timeout=0.2) as queue:
        async with notifier_held(queue):
            job = await queue.enqueue_job("t", queue="unwoken")
            await waiting.until(
                lambda: "Could not wake the workers of unwoken" in caplog.text,
                what="the failed wake-up logged",
            )
        assert (await waiting.job_status(queue, job.id)).status == jobqueue.JobStatus.PENDING
    assert [name for name, _ in await listener.until_marker()] == ["warm-up"]
