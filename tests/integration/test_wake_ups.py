"""Who wakes the workers (migration 0010): a producer's own enqueues notify after their commit,
coalesced, instead of in the trigger at the commit; everything else notifies in the trigger."""

from __future__ import annotations

import asyncio
import collections.abc
import typing

import psycopg
import pytest

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


async def test_an_enqueue_alone_wakes_once_from_the_trigger(
    database_url: str, listener: Listener
) -> None:
    enqueues: list[tuple[str, collections.abc.Callable[[jobqueue.Queue], typing.Any]]] = [
        ("one", lambda queue: queue.enqueue_job("t", queue="one")),
        ("many", lambda queue: queue.enqueue_jobs([jobqueue.NewJob("t", queue="many")] * 2)),
        ("unique", lambda queue: queue.enqueue_job("t", queue="unique", unique_key="k")),
        (
            "uniques",
            lambda queue: queue.enqueue_jobs(
                [jobqueue.NewJob("t", queue="uniques", unique_key="k2")]
            ),
        ),
    ]
    async with jobqueue.Queue(database_url) as queue:
        for name, enqueue in enqueues:
            await enqueue(queue)
            assert [queue_name for queue_name, _ in await listener.until_marker()] == [name]
        assert queue._wake_ups.sent == 0


async def test_enqueues_at_once_leave_the_wake_up_to_the_producer_once_per_queue(
    database_url: str, listener: Listener
) -> None:
    names = [f"q{n}" for n in range(12)]
    async with jobqueue.Queue(database_url) as queue:
        await asyncio.gather(
            *(queue.enqueue_job("t", queue=name) for name in names[:6]),
            *(queue.enqueue_jobs([jobqueue.NewJob("t", queue=name)]) for name in names[6:9]),
            *(queue.enqueue_job("t", queue=name, unique_key=name) for name in names[9:]),
        )
        await queue._wake_ups.flush()
        # The first found none under way and let the trigger notify; the others left it to
        # the producer, coalesced into as many statements as went out one after another.
        assert 1 <= queue._wake_ups.sent <= 11
    arrived = await listener.until_marker()
    assert sorted(name for name, _ in arrived) == sorted(names)  # each once


async def test_closing_a_producer_sends_its_last_wake_ups_first(
    database_url: str, listener: Listener
) -> None:
    queue = await jobqueue.Queue(database_url).open()
    await asyncio.gather(
        queue.enqueue_job("t", queue="first"), queue.enqueue_job("t", queue="last")
    )
    await queue.close()
    assert sorted(name for name, _ in await listener.until_marker()) == ["first", "last"]
