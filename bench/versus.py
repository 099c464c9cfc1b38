#!/usr/bin/env python3
"""jobqueue against PgQueuer, side by side: the same workloads on the same server in one run.

PgQueuer (PyPI ``pgqueuer``, measured at 1.6.0) is never a dependency of the project: it goes
into a virtualenv of the benchmark's own with ``make bench-versus`` (``.venv-bench``, from
``bench/requirements-versus.txt``, which also brings matplotlib for the plot). Without it this
script stops at once and says how to get it.

Both queues get a scratch database of their own on one server (an embedded PostgreSQL, fsync
on, unless ``DATABASE_URL`` is set): jobqueue migrated as shipped, PgQueuer installed with
``Queries.install()`` (its default durability: logged tables). PgQueuer is driven through
asyncpg, its default driver and the one its own benchmarks use; its workers are
``python bench/versus_workers.py --batch-size N`` processes: one ``QueueManager`` each,
through ``pgqueuer.run`` on uvloop, which is what ``pgq run`` does (``pgq run`` itself fails
in 1.6.0 with the typer it installs: see ``versus_workers``). jobqueue's workers are
``jobqueue worker --no-plugins --import versus_workers``, running the built-in no-op
handler. Every measurement is repeated ``--repeats`` times (default 3), the two queues
taking turns within each repetition, and the median is reported. Workloads:

- **enqueue one at a time**: ``--single-jobs`` (2,000) jobs, each its own call and
  transaction: ``Queue.enqueue_job`` against ``Queries.enqueue(entrypoint, None)``; and,
  as the floor of any client on jobqueue's schema, a prepared ``INSERT`` of the id and type
  alone on asyncpg (its ratio to PgQueuer is the most a single enqueue could reach). The
  three take turns every 50 calls: each call waits for its commit's flush, which drifts
  with the disk by more than they differ;
- **enqueue in batches of 1,000**: ``--jobs`` (20,000) jobs: ``Queue.enqueue_batch`` (COPY,
  ids only) and, for reference, ``Queue.enqueue_jobs`` (one ``INSERT`` returning the jobs),
  against ``Queries.enqueue`` with lists, taking turns batch by batch;
- **drain**: ``--jobs`` no-op jobs enqueued in one transaction to idle workers (LISTEN on
  both sides); the clock runs from just before the commit to the moment the queue says all
  are done (jobqueue: ``get_queue_stats()``; PgQueuer: its queue table is empty, completion
  deleting the row), polled every 20 ms. Sweep: jobqueue processes x ``--concurrency``
  (1-2 x 32/100/200/500) with ``--log-level warning``; PgQueuer processes x ``--batch-size``
  (1-2 x 10/50/100/200/500) with ``--log-level warning`` (PgQueuer logs nothing per job at its
  default INFO either). Each queue's best configuration by median is compared. jobqueue at
  2 x 32 is also run with its default INFO logging and quiet again, back to back (in turn
  which first), in each repetition; reported as the median of the pairs' INFO/quiet;
- **pickup latency**: one idle worker each (jobqueue ``--concurrency 8``, PgQueuer
  ``--batch-size 10``), ``--latency-jobs`` (200) jobs enqueued one at a time, each after the
  previous one started plus a random 10-30 ms. The handler sends its start time
  (``time.monotonic()``, one clock for every process on Linux) over UDP. Reported from the
  enqueue call's return (the commit is acknowledged: the goal's clock) and from its start (so
  including the INSERT and its commit's fsync). A ``CHECKPOINT`` comes first, so that the
  load measured before is not still being written out;
- **the SQL limit**: ``job_claim`` and ``job_complete_many``, the worker's own statements,
  draining ``--jobs`` jobs on plain psycopg connections with no worker around them (the
  enqueue as ``bench/claim.py`` does it), at batch 32, 100, 200 and 500, on one connection
  and on two at once; the best of these is the limit jobqueue's best drain is compared with;
- **a big table**: jobqueue's enqueue_batch, enqueue_job, claim + complete and stats on an
  empty table against one with ``--done-rows`` (1,000,000) finished and ``--delayed-rows``
  (100,000) delayed jobs, in a second database loaded once; the two take turns batch by
  batch, claim by claim, every 50 single enqueues and call by call for stats;
- **memory**: VmRSS (``/proc/<pid>/status``) of an idle ``jobqueue worker`` with the
  installed plugins (the books plugin) and with ``--no-plugins``, and of an idle PgQueuer
  worker for reference, 1 s after each is idle.

The table has one row per figure of issue 13: jobqueue, PgQueuer, the ratio and the goal,
met or not. ``--json`` prints the figures as JSON; ``--plot`` (default ``bench/versus.png``)
draws drain throughput against processes x concurrency (jobqueue) and processes x batch size
(PgQueuer). The load average before and after is printed: on a shared 2-core machine
absolute figures move by +-25%, the ratios of one run are what count. Run from the
repository root::

    make bench-versus                                     # about 5 minutes
    .venv-bench/bin/python bench/versus.py --repeats 1 --jobs 5000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import contextlib
import dataclasses
import functools
import importlib
import itertools
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
import typing
import urllib.parse

import psycopg.conninfo

import _common
import claim
import versus_workers
import worker
from jobqueue import checks, db, migrations, producer, sql, types
from jobqueue import queue as queue_module

BENCH_DIR: typing.Final = pathlib.Path(__file__).resolve().parent
HANDLERS_MODULE: typing.Final = "versus_workers"
NOOP: typing.Final = "jobqueue.noop"
PGQ_NOOP: typing.Final = "noop"
BATCH: typing.Final = 1_000
PROCESSES: typing.Final = (1, 2)
JQ_CONCURRENCY: typing.Final = (32, 100, 200, 500)
# PgQueuer's default is 10; its best drain was at batch 200 in one quiet run and 500 in the
# next (2026-12-01); jobqueue's rose with --concurrency to 500 (a worker claims up to its
# free slots at once). Both sweeps end at 500 and span their best.
PGQ_BATCH_SIZES: typing.Final = (10, 50, 100, 200, 500)
INFO_RUN: typing.Final = (2, 32)
RAW_BATCHES: typing.Final = (32, 100, 200, 500)
RAW_CONNECTIONS: typing.Final = (1, 2)
LATENCY_CONCURRENCY: typing.Final = 8
LATENCY_PGQ_BATCH: typing.Final = 10
PAUSE_MS: typing.Final = (10.0, 30.0)
PICKUP_TIMEOUT_SECONDS: typing.Final = 10.0
SETTLE_SECONDS: typing.Final = 1.0
POLL_SECONDS: typing.Final = 0.02
PGQ_IDLE_PATTERN: typing.Final = "%queued_work%"
PGQ_TABLES: typing.Final = "pgqueuer, pgqueuer_log, pgqueuer_statistics"
SERVER_SETTINGS: typing.Final = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
PGQ_IDLE: typing.Final = """
SELECT application_name FROM pg_stat_activity
WHERE datname = current_database() AND application_name = ANY(%(names)s::text[])
  AND state = 'idle' AND query LIKE %(pattern)s
"""

Connection: typing.TypeAlias = _common.Connection

# The goals of issue 13.
GOAL_DRAIN: typing.Final = 1.5
GOAL_SINGLE: typing.Final = 1.2
GOAL_BATCH: typing.Final = 2.0
GOAL_P50_MS: typing.Final = 1.5
GOAL_P99_MS: typing.Final = 4.0
GOAL_INFO_SHARE: typing.Final = 0.85
GOAL_LIMIT_SHARE: typing.Final = 0.6
GOAL_SCALE: typing.Final = 1.25
GOAL_RSS_BOOKS_MB: typing.Final = 80.0
GOAL_RSS_BARE_MB: typing.Final = 50.0


def import_optional(name: str) -> typing.Any:
    """A bench-only package, or exit with how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise SystemExit(
            f"bench/versus.py needs {name!r}, a bench-only package (never a project"
            " dependency). Run `make bench-versus`, which makes .venv-bench with it, or:"
            " python -m venv /tmp/versus && /tmp/versus/bin/pip install -e '.[books,embedded]'"
            " -r bench/requirements-versus.txt && /tmp/versus/bin/python bench/versus.py"
        ) from None


def asyncpg_dsn(conninfo: str) -> str:
    """A ``postgresql://`` URL for asyncpg (which reads no key/value strings) of the same
    database as a psycopg connection string."""
    given = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = urllib.parse.quote(str(given.get("user", "")), safe="")
    password = given.get("password")
    credentials = user + (":" + urllib.parse.quote(str(password), safe="") if password else "")
    query = {name: str(given[name]) for name in ("host", "port", "sslmode") if given.get(name)}
    database = urllib.parse.quote(str(given.get("dbname", "")), safe="")
    return f"postgresql://{credentials}@/{database}?{urllib.parse.urlencode(query)}"


# --- worker processes -------------------------------------------------------------------


def worker_mode(name: str, *, quiet: bool) -> worker.LogMode:
    """jobqueue's workers: the built-in no-op only (``--no-plugins`` and our module)."""
    level = ("--log-level", "warning") if quiet else ()
    return worker.LogMode(name, (*level, "--no-plugins", "--import", HANDLERS_MODULE), to_file=True)


QUIET: typing.Final = worker_mode("warning", quiet=True)
INFO: typing.Final = worker_mode("info", quiet=False)
_pgq_numbers = itertools.count(1)


async def start_pgq_worker(
    url: str, batch_size: int, folder: pathlib.Path, *, extra_env: dict[str, str] | None = None
) -> worker.WorkerProcess:
    """A PgQueuer worker process, ``python bench/versus_workers.py --batch-size B`` (what
    ``pgq run versus_workers:pgq_worker --batch-size B --log-level warning`` would be)."""
    name = f"pgq-bench-{next(_pgq_numbers)}"
    environment = (
        dict(os.environ) | {"PGDSN": asyncpg_dsn(url), "PGAPPNAME": name} | (extra_env or {})
    )
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH_DIR / f"{HANDLERS_MODULE}.py"),
            "--batch-size",
            str(batch_size),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    return worker.WorkerProcess(name, process, log_path)


@contextlib.asynccontextmanager
async def running_pgq_workers(
    url: str, count: int, batch_size: int, folder: pathlib.Path, **kwargs: typing.Any
) -> collections.abc.AsyncIterator[list[worker.WorkerProcess]]:
    workers: list[worker.WorkerProcess] = []
    try:
        for _ in range(count):
            # one at a time: those started are stopped if one fails
            started = await start_pgq_worker(url, batch_size, folder, **kwargs)
            workers.append(started)
        yield workers
    finally:
        await worker.stop_workers(workers)


async def wait_pgq_idle(
    conn: Connection, workers: collections.abc.Sequence[worker.WorkerProcess]
) -> None:
    """Until every PgQueuer worker has listened, found no work and is waiting (its last
    statements, after an empty dequeue, count queued work)."""
    expected = {process.worker_id for process in workers}
    seen: set[str] = set()
    deadline = time.monotonic() + worker.START_TIMEOUT_SECONDS
    while seen != expected:
        worker.check_alive(workers)
        if time.monotonic() > deadline:
            raise RuntimeError(f"PgQueuer workers not idle in time: {seen} of {expected}")
        cursor = await conn.execute(
            PGQ_IDLE, {"names": list(expected), "pattern": PGQ_IDLE_PATTERN}
        )
        seen |= {row[0] for row in await cursor.fetchall()}
        await asyncio.sleep(0.05)


# --- the two systems --------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Systems:
    folder: pathlib.Path
    local_server: bool
    jq_url: str
    jq_conn: Connection
    jq_queue: queue_module.Queue
    pgq_url: str
    pgq_conn: Connection  # psycopg, for the benchmark's own look at PgQueuer's tables
    pgq_queries: typing.Any  # pgqueuer.Queries over an asyncpg connection
    pgq_asyncpg: typing.Any

    def jq_setup(self) -> worker.Setup:
        return worker.Setup(
            self.jq_url, self.jq_conn, self.jq_queue, self.folder, self.local_server
        )

    async def truncate(self) -> None:
        await self.jq_conn.execute("TRUNCATE jobs")
        await self.pgq_conn.execute(f"TRUNCATE {PGQ_TABLES}")


# --- enqueue ----------------------------------------------------------------------------


SINGLE_TURN: typing.Final = 50  # single enqueues per system per turn

# One turn of a system: enqueue this many jobs.
Turn: typing.TypeAlias = collections.abc.Callable[[int], collections.abc.Awaitable[object]]


async def in_turns(turns: dict[str, Turn], jobs: int, size: int) -> dict[str, float]:
    """Jobs per second of each system enqueueing ``jobs``, ``size`` at a time, the systems
    taking turns: the machine's drift (a commit's fsync varies by more than the queues
    differ) then falls on all of them alike."""
    seconds = dict.fromkeys(turns, 0.0)
    for first in range(0, jobs, size):
        count = min(size, jobs - first)
        for name, turn in turns.items():
            started = time.perf_counter()
            await turn(count)
            seconds[name] += time.perf_counter() - started
    return {name: jobs / spent for name, spent in seconds.items()}


def one_at_a_time(
    call: collections.abc.Callable[[], collections.abc.Awaitable[object]],
) -> Turn:
    async def turn(count: int) -> None:
        for _ in range(count):
            await call()

    return turn


async def enqueue_single(systems: Systems, jobs: int) -> dict[str, float]:
    """Jobs per second of one-at-a-time enqueues, ``jobs`` each: ``Queue.enqueue_job``,
    PgQueuer's ``Queries.enqueue``, and the floor, a prepared ``INSERT`` of the id and type
    alone on asyncpg, PgQueuer's driver, with no queue around it (the triggers, indexes and
    commit of a real enqueue): the most any client could get from jobqueue's schema. They
    take turns every ``SINGLE_TURN`` calls."""
    await systems.truncate()
    asyncpg = import_optional("asyncpg")
    floor_conn = await asyncpg.connect(dsn=asyncpg_dsn(systems.jq_url))
    try:
        insert = await floor_conn.prepare("INSERT INTO jobs (id, type) VALUES ($1, $2)")
        turns = {
            "jobqueue": one_at_a_time(lambda: systems.jq_queue.enqueue_job(NOOP)),
            "pgqueuer": one_at_a_time(lambda: systems.pgq_queries.enqueue(PGQ_NOOP, None, 0)),
            "floor": one_at_a_time(lambda: insert.fetch(producer.new_job_id(), NOOP)),
        }
        return await in_turns(turns, jobs, SINGLE_TURN)
    finally:
        await floor_conn.close()


async def enqueue_batches(systems: Systems, jobs: int) -> dict[str, float]:
    """Jobs per second of ``jobs`` enqueued in batches of ``BATCH``: ``Queue.enqueue_batch``
    (COPY), ``Queue.enqueue_jobs`` (one INSERT) and PgQueuer's ``Queries.enqueue`` with
    lists, taking turns batch by batch."""
    await systems.truncate()
    batch = [types.NewJob(NOOP)] * BATCH
    queue = systems.jq_queue

    def pgq(size: int) -> collections.abc.Awaitable[object]:
        return systems.pgq_queries.enqueue([PGQ_NOOP] * size, [None] * size, [0] * size)  # type: ignore[no-any-return]

    rates = await in_turns(
        {
            "batch jobqueue": lambda size: queue.enqueue_batch(batch[:size]),
            "batch pgqueuer": pgq,
            "enqueue_jobs jobqueue": lambda size: queue.enqueue_jobs(batch[:size]),
        },
        jobs,
        BATCH,
    )
    for conn, table, expected in (
        (systems.jq_conn, "jobs", 2 * jobs),
        (systems.pgq_conn, "pgqueuer", jobs),
    ):
        count = await _common.count(conn, f"SELECT count(*) FROM {table}")
        if count != expected:
            raise RuntimeError(f"batch enqueue: {count} jobs in {table}, {expected} enqueued")
    return rates


# --- drain ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Drain:
    system: str  # "jobqueue" or "pgqueuer"
    processes: int
    width: int  # jobqueue: --concurrency; PgQueuer: --batch-size
    logs: str
    jobs_per_second: float
    worker_cpu_us: float | None
    db_cpu_us: float | None
    other_share: float | None

    @property
    def config(self) -> tuple[str, int, int, str]:
        return (self.system, self.processes, self.width, self.logs)


def _per_job(seconds: float | None, jobs: int) -> float | None:
    return None if seconds is None else seconds / jobs * 1e6


async def drain_jq(
    systems: Systems, processes: int, concurrency: int, mode: worker.LogMode, jobs: int
) -> Drain:
    result = await worker.throughput(systems.jq_setup(), processes, concurrency, mode, jobs)
    return Drain(
        "jobqueue",
        processes,
        concurrency,
        mode.name,
        result.jobs_per_second,
        _per_job(result.worker_cpu_seconds, jobs),
        _per_job(result.server_cpu_seconds, jobs),
        result.other_share,
    )


async def drain_pgq(systems: Systems, processes: int, batch_size: int, jobs: int) -> Drain:
    await systems.truncate()
    conn = systems.pgq_conn
    async with running_pgq_workers(
        systems.pgq_url, processes, batch_size, systems.folder
    ) as workers:
        await wait_pgq_idle(conn, workers)
        meter = worker.CpuMeter(workers, systems.local_server)
        await meter.start(conn)
        async with systems.pgq_asyncpg.transaction():
            await systems.pgq_queries.enqueue([PGQ_NOOP] * jobs, [None] * jobs, [0] * jobs)
            started = time.perf_counter()  # the commit makes them visible, and notifies
        deadline = time.monotonic() + max(120.0, jobs / 100)
        while await _common.count(conn, "SELECT count(*) FROM pgqueuer"):
            worker.check_alive(workers)
            if time.monotonic() > deadline:
                raise RuntimeError(f"PgQueuer: not all {jobs:,} jobs done in time")
            await asyncio.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        await meter.stop(conn)
    done = await _common.count(
        conn, "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
    )
    if done != jobs:
        raise RuntimeError(f"PgQueuer: {done:,} of {jobs:,} jobs logged successful")
    return Drain(
        "pgqueuer",
        processes,
        batch_size,
        "warning",
        jobs / seconds,
        _per_job(meter.worker_seconds, jobs),
        _per_job(meter.server_seconds, jobs),
        meter.other_share,
    )


# --- pickup latency ---------------------------------------------------------------------


class _Pickups(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | typing.Any, int]) -> None:
        sequence, started = data.decode().split()
        self.received.put_nowait((sequence, float(started)))


@dataclasses.dataclass(frozen=True, slots=True)
class Latency:
    system: str
    after_commit_ms: list[float]  # handler start - the enqueue call's return
    after_start_ms: list[float]  # handler start - the enqueue call's start

    def summary(self) -> dict[str, float]:
        return {
            "p50": _common.percentile(self.after_commit_ms, 0.5),
            "p99": _common.percentile(self.after_commit_ms, 0.99),
            "max": max(self.after_commit_ms),
            "from_enqueue_start_p50": _common.percentile(self.after_start_ms, 0.5),
            "from_enqueue_start_p99": _common.percentile(self.after_start_ms, 0.99),
        }


@contextlib.asynccontextmanager
async def pickup_listener() -> collections.abc.AsyncIterator[tuple[int, _Pickups]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Pickups, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1], protocol
    finally:
        transport.close()


async def measure_pickups(
    protocol: _Pickups,
    jobs: int,
    enqueue: collections.abc.Callable[[int], collections.abc.Awaitable[object]],
    workers: collections.abc.Sequence[worker.WorkerProcess],
) -> tuple[list[float], list[float]]:
    after_commit: list[float] = []
    after_start: list[float] = []
    for sequence in range(jobs):
        worker.check_alive(workers)
        called = time.monotonic()
        await enqueue(sequence)
        returned = time.monotonic()
        async with asyncio.timeout(PICKUP_TIMEOUT_SECONDS):
            while True:
                seen, started = await protocol.received.get()
                if seen == str(sequence):
                    break
        after_commit.append((started - returned) * 1000)
        after_start.append((started - called) * 1000)
        await asyncio.sleep(random.uniform(*PAUSE_MS) / 1000)
    return after_commit, after_start


async def latency_jq(systems: Systems, jobs: int) -> Latency:
    await systems.truncate()
    options = ["--concurrency", str(LATENCY_CONCURRENCY)]
    async with pickup_listener() as (port, protocol):
        os.environ[versus_workers.PICKUP_PORT_ENV] = str(port)
        try:
            async with worker.running_workers(
                systems.jq_url, 1, options, QUIET, systems.folder
            ) as workers:
                await worker.wait_idle(systems.jq_conn, workers, listen=True)

                async def enqueue(sequence: int) -> object:
                    return await systems.jq_queue.enqueue_job("bench.pickup", {"seq": sequence})

                after_commit, after_start = await measure_pickups(protocol, jobs, enqueue, workers)
        finally:
            del os.environ[versus_workers.PICKUP_PORT_ENV]
    return Latency("jobqueue", after_commit, after_start)


async def latency_pgq(systems: Systems, jobs: int) -> Latency:
    await systems.truncate()
    async with pickup_listener() as (port, protocol):
        extra = {versus_workers.PICKUP_PORT_ENV: str(port)}
        async with running_pgq_workers(
            systems.pgq_url, 1, LATENCY_PGQ_BATCH, systems.folder, extra_env=extra
        ) as workers:
            await wait_pgq_idle(systems.pgq_conn, workers)

            async def enqueue(sequence: int) -> object:
                return await systems.pgq_queries.enqueue("pickup", str(sequence).encode(), 0)

            after_commit, after_start = await measure_pickups(protocol, jobs, enqueue, workers)
    return Latency("pgqueuer", after_commit, after_start)


# --- the SQL limit ----------------------------------------------------------------------


async def raw_drain(url: str, connections: int, batch: int) -> None:
    """Drain the pending jobs with the worker's own two statements on ``connections``
    plain connections at once: claim ``batch``, complete them with one statement."""

    async def one(number: int) -> None:
        conn = await db.connect(url)
        async with conn:
            while await claim_and_complete(conn, f"{claim.WORKER}-{number}", batch):
                pass

    await asyncio.gather(*(one(number) for number in range(connections)))


async def claim_and_complete(conn: Connection, worker_id: str, batch: int) -> int:
    """Claim up to ``batch`` pending jobs with ``job_claim`` and complete them with one
    ``job_complete_many``, as a worker would; how many there were."""
    params = {
        "worker_id": worker_id,
        "limit": batch,
        "queue": checks.DEFAULT_QUEUE,
        "types": None,
        "now": None,
    }
    cursor = await conn.execute(sql.query("job_claim"), params)
    ids = [row[0] for row in await cursor.fetchall()]
    if ids:
        done = {"ids": ids, "results": [None] * len(ids), "worker_id": worker_id, "now": None}
        await conn.execute(sql.query("job_complete_many"), done)
    return len(ids)


async def sql_limit(
    systems: Systems, bench: claim.ClaimBench, connections: int, batch: int
) -> float:
    await bench.fresh_jobs()
    started = time.perf_counter()
    await raw_drain(systems.jq_url, connections, batch)
    seconds = time.perf_counter() - started
    await bench.check_all(bench.jobs, "done")
    return bench.jobs / seconds


# --- a big table -----------------------------------------------------------------------

DELAYED: typing.Final = """
INSERT INTO jobs (type, status, run_at)
SELECT 'jobqueue.noop', 'pending', now() + interval '1 day' + g * interval '1 second'
FROM generate_series(1, %(rows)s) AS g
"""
STATS_CALLS: typing.Final = 50
SCALE_MEASURES: typing.Final = ("enqueue_batch", "enqueue_job", "claim", "stats")
SCALE_CLAIM_BATCH: typing.Final = 200


@dataclasses.dataclass(slots=True)
class Table:
    """One of the two tables ``scale`` compares: its database's queue and a connection."""

    queue: queue_module.Queue
    conn: Connection


async def scale_round(
    tables: dict[str, Table], jobs: int, single: int
) -> dict[str, dict[str, float]]:
    """Seconds per job (per call for stats) of enqueue_batch, the raw claim + complete
    (batch ``SCALE_CLAIM_BATCH``, the worker's statements on a plain connection),
    enqueue_job and ``get_queue_stats()`` on each table, the tables taking turns: batch by
    batch, claim by claim, every ``SINGLE_TURN`` single enqueues, call by call for stats.
    Each table is left as it was found but for the new jobs, done."""
    batch = [types.NewJob(NOOP)] * BATCH

    def enqueue_batch(table: Table) -> Turn:
        return lambda count: table.queue.enqueue_batch(batch[:count])

    def claim_turn(table: Table) -> Turn:
        return lambda count: claim_and_complete(table.conn, claim.WORKER, count)

    measures = {
        "enqueue_batch": await in_turns(
            {name: enqueue_batch(table) for name, table in tables.items()}, jobs, BATCH
        ),
        "claim": await in_turns(
            {name: claim_turn(table) for name, table in tables.items()}, jobs, SCALE_CLAIM_BATCH
        ),
        "enqueue_job": await in_turns(
            {
                name: one_at_a_time(functools.partial(table.queue.enqueue_job, NOOP))
                for name, table in tables.items()
            },
            single,
            SINGLE_TURN,
        ),
    }
    for table in tables.values():
        while await claim_and_complete(table.conn, claim.WORKER, SCALE_CLAIM_BATCH):
            pass
    stats: dict[str, list[float]] = {name: [] for name in tables}
    for _ in range(STATS_CALLS):
        for name, table in tables.items():
            started = time.perf_counter()
            await table.queue.get_queue_stats()
            stats[name].append(time.perf_counter() - started)
    return {
        name: {
            **{measure: 1 / rates[name] for measure, rates in measures.items()},
            "stats": median(stats[name]),
        }
        for name in tables
    }


async def scale(systems: Systems, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Each measure of ``scale_round`` on an empty table (jobqueue's database) and on one
    with ``--done-rows`` finished jobs and ``--delayed-rows`` delayed ones (a second
    database, loaded once): medians of ``--repeats`` rounds, in turn which table first."""
    async with _common.scratch_database(systems.jq_url, "jobqueue_bench_versus_big") as big_url:
        big_conn = await db.connect(big_url)
        async with big_conn, queue_module.Queue(big_url) as big_queue:
            await migrations.migrate(big_conn)
            await big_conn.execute(claim.INSERT_DONE, {"rows": args.done_rows})
            await big_conn.execute(DELAYED, {"rows": args.delayed_rows})
            await big_queue.get_queue_stats()  # folds the inserts' deltas
            await systems.truncate()
            for conn in (systems.jq_conn, big_conn):
                await conn.execute("VACUUM ANALYZE jobs")
            # The million rows' WAL would otherwise be checkpointed during the measurement,
            # and the figures be those of the load: a table in use has long been written out.
            await big_conn.execute("CHECKPOINT")
            states = {"empty": (systems.jq_queue, systems.jq_url), "big": (big_queue, big_url)}
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in states}
            for repeat in range(args.repeats):
                order = list(states) if repeat % 2 == 0 else list(reversed(states))
                # The claims run on new connections each round, as raw_drain's do. On one
                # connection kept through all rounds, the empty table's claims once took 2.6
                # times as long as the big one's (not seen in isolation; cause not found).
                async with contextlib.AsyncExitStack() as stack:
                    tables = {}
                    for name in order:
                        queue, url = states[name]
                        conn = await stack.enter_async_context(await db.connect(url))
                        tables[name] = Table(queue, conn)
                    measured = await scale_round(tables, args.jobs, args.single_jobs // 4)
                for name, figures in measured.items():
                    rounds[name].append(figures)
    await systems.truncate()
    return {
        state: {name: median(r[name] for r in done) for name in SCALE_MEASURES}
        for state, done in rounds.items()
    }


# --- memory -----------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def idle_rss(systems: Systems) -> dict[str, float | None]:
    found: dict[str, float | None] = {}
    plugins_on = worker.LogMode("plugins", ("--log-level", "warning"), to_file=True)
    for name, mode in (("jobqueue, books plugin", plugins_on), ("jobqueue, --no-plugins", QUIET)):
        async with worker.running_workers(systems.jq_url, 1, [], mode, systems.folder) as workers:
            await worker.wait_idle(systems.jq_conn, workers, listen=True)
            await asyncio.sleep(SETTLE_SECONDS)
            found[name] = rss_mb(workers[0].process.pid)
    async with running_pgq_workers(
        systems.pgq_url, 1, LATENCY_PGQ_BATCH, systems.folder
    ) as workers:
        await wait_pgq_idle(systems.pgq_conn, workers)
        await asyncio.sleep(SETTLE_SECONDS)
        found["pgqueuer"] = rss_mb(workers[0].process.pid)
    return found


# --- the run ----------------------------------------------------------------------------


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def median(values: collections.abc.Iterable[float]) -> float:
    return statistics.median(list(values))


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    pgqueuer = import_optional("pgqueuer")
    asyncpg = import_optional("asyncpg")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    load_before = load()
    async with (
        _common.scratch_database(server_url, "jobqueue_bench_versus_jq") as jq_url,
        _common.scratch_database(server_url, "jobqueue_bench_versus_pgq") as pgq_url,
    ):
        jq_conn = await db.connect(jq_url)
        pgq_conn = await db.connect(pgq_url)
        pgq_native = await asyncpg.connect(dsn=asyncpg_dsn(pgq_url))
        try:
            async with jq_conn, pgq_conn, queue_module.Queue(jq_url) as jq_queue:
                await migrations.migrate(jq_conn)
                queries = pgqueuer.Queries(pgqueuer.AsyncpgDriver(pgq_native))
                await queries.install()
                facts = await _common.server_settings(jq_conn, SERVER_SETTINGS)
                with tempfile.TemporaryDirectory(prefix="jobqueue-versus-") as folder:
                    systems = Systems(
                        pathlib.Path(folder),
                        args.local_server,
                        jq_url,
                        jq_conn,
                        jq_queue,
                        pgq_url,
                        pgq_conn,
                        queries,
                        pgq_native,
                    )
                    outcome = await measure(args, systems)
        finally:
            await pgq_native.close()
    return {
        **outcome,
        "facts": facts,
        "load_before": load_before,
        "load_after": load(),
        "pgqueuer_version": str(pgqueuer.__version__),
    }


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def measure(args: argparse.Namespace, systems: Systems) -> dict[str, typing.Any]:
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    for repeat in range(args.repeats):
        progress(f"enqueue, repetition {repeat + 1} of {args.repeats}")
        for name, rate in (await enqueue_single(systems, args.single_jobs)).items():
            add(f"single {name}", rate)
        for name, rate in (await enqueue_batches(systems, args.jobs)).items():
            add(name, rate)

    drains: list[Drain] = []
    log_pairs: list[tuple[float, float]] = []  # (quiet, INFO) jobs/s at INFO_RUN
    for repeat in range(args.repeats):
        progress(f"drain sweep, repetition {repeat + 1} of {args.repeats}")
        for processes in args.processes:
            for concurrency in args.concurrency:
                jq = await drain_jq(systems, processes, concurrency, QUIET, args.jobs)
                drains.append(jq)
            for batch_size in args.batch_sizes:
                pgq = await drain_pgq(systems, processes, batch_size, args.jobs)
                drains.append(pgq)
        # INFO against quiet, back to back in turn, so that the machine's drift between
        # the two runs of a pair is small beside what the logs cost.
        pair = {}
        for mode in (QUIET, INFO) if repeat % 2 == 0 else (INFO, QUIET):
            pair[mode.name] = await drain_jq(systems, *INFO_RUN, mode, args.jobs)
            drains.append(pair[mode.name])
        log_pairs.append((pair[QUIET.name].jobs_per_second, pair[INFO.name].jobs_per_second))

    limits: dict[tuple[int, int], list[float]] = {}
    bench = claim.ClaimBench(systems.jq_queue, systems.jq_conn, args.jobs, triggers=True)
    for repeat in range(args.repeats):
        progress(f"SQL limit, repetition {repeat + 1} of {args.repeats}")
        for connections in RAW_CONNECTIONS:
            for batch in RAW_BATCHES:
                limits.setdefault((connections, batch), []).append(
                    await sql_limit(systems, bench, connections, batch)
                )

    latencies: list[Latency] = []
    if args.latency_jobs:
        progress("pickup latency")
        # The drains' and the SQL limit's WAL is written out first: otherwise the fsyncs
        # measured would wait behind the write-back of the load before.
        await systems.jq_conn.execute("CHECKPOINT")
        latencies = [
            await latency_jq(systems, args.latency_jobs),
            await latency_pgq(systems, args.latency_jobs),
        ]
    scaled = {}
    if args.done_rows or args.delayed_rows:
        progress(f"a big table: {args.done_rows:,} done jobs, {args.delayed_rows:,} delayed")
        scaled = await scale(systems, args)
    progress("memory")
    memory = await idle_rss(systems)
    return {
        "enqueue": {key: median(values) for key, values in samples.items()},
        "enqueue_samples": samples,
        "drains": drains,
        "log_pairs": log_pairs,
        "limits": {key: median(values) for key, values in limits.items()},
        "latency": latencies,
        "memory": memory,
        "scale": scaled,
    }


# --- output -----------------------------------------------------------------------------


def drain_medians(drains: list[Drain]) -> dict[tuple[str, int, int, str], float]:
    by_config: dict[tuple[str, int, int, str], list[float]] = {}
    for drain in drains:
        by_config.setdefault(drain.config, []).append(drain.jobs_per_second)
    return {config: median(values) for config, values in by_config.items()}


def best(
    medians: dict[tuple[str, int, int, str], float], system: str
) -> tuple[tuple[str, int, int, str], float]:
    return max(
        (
            (config, value)
            for config, value in medians.items()
            if config[0] == system and config[3] == "warning"
        ),
        key=lambda item: item[1],
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    name: str
    jobqueue: str
    pgqueuer: str
    ratio: str
    goal: str
    met: bool | None


def rows(outcome: dict[str, typing.Any]) -> list[Row]:
    enqueue: dict[str, float] = outcome["enqueue"]
    medians = drain_medians(outcome["drains"])
    (jq_config, jq_best), (pgq_config, pgq_best) = (
        best(medians, "jobqueue"),
        best(medians, "pgqueuer"),
    )
    log_pairs: list[tuple[float, float]] = outcome["log_pairs"]
    info = median(info for _, info in log_pairs)
    info_share = median(info / quiet for quiet, info in log_pairs)
    limits: dict[tuple[int, int], float] = outcome["limits"]
    (limit_connections, limit_batch), limit = max(limits.items(), key=lambda item: item[1])
    table = [
        Row(
            f"drain, jobs/s (jq {jq_config[1]}x{jq_config[2]},"
            f" pgq {pgq_config[1]} proc batch {pgq_config[2]})",
            f"{jq_best:,.0f}",
            f"{pgq_best:,.0f}",
            f"{jq_best / pgq_best:.2f}x",
            f">= {GOAL_DRAIN}x",
            jq_best / pgq_best >= GOAL_DRAIN,
        ),
        Row(
            "enqueue one at a time, jobs/s",
            f"{enqueue['single jobqueue']:,.0f}",
            f"{enqueue['single pgqueuer']:,.0f}",
            f"{enqueue['single jobqueue'] / enqueue['single pgqueuer']:.2f}x",
            f">= {GOAL_SINGLE}x",
            enqueue["single jobqueue"] / enqueue["single pgqueuer"] >= GOAL_SINGLE,
        ),
        Row(
            "  the floor: a bare INSERT into jobqueue's table (asyncpg), jobs/s",
            f"{enqueue['single floor']:,.0f}",
            f"{enqueue['single pgqueuer']:,.0f}",
            f"{enqueue['single floor'] / enqueue['single pgqueuer']:.2f}x (the ceiling)",
            "",
            None,
        ),
        Row(
            f"enqueue in batches of {BATCH:,} (enqueue_batch), jobs/s",
            f"{enqueue['batch jobqueue']:,.0f}",
            f"{enqueue['batch pgqueuer']:,.0f}",
            f"{enqueue['batch jobqueue'] / enqueue['batch pgqueuer']:.2f}x",
            f">= {GOAL_BATCH}x",
            enqueue["batch jobqueue"] / enqueue["batch pgqueuer"] >= GOAL_BATCH,
        ),
        Row(
            "  the same with enqueue_jobs, jobs/s",
            f"{enqueue['enqueue_jobs jobqueue']:,.0f}",
            f"{enqueue['batch pgqueuer']:,.0f}",
            f"{enqueue['enqueue_jobs jobqueue'] / enqueue['batch pgqueuer']:.2f}x",
            "",
            None,
        ),
    ]
    latencies: list[Latency] = outcome["latency"]
    if latencies:
        jq, pgq = (latency.summary() for latency in latencies)
        table += [
            Row(
                "pickup p50 / p99 after the enqueue's commit, ms",
                f"{jq['p50']:.2f} / {jq['p99']:.2f}",
                f"{pgq['p50']:.2f} / {pgq['p99']:.2f}",
                "",
                f"p50 <= {GOAL_P50_MS}, p99 <= {GOAL_P99_MS:g}",
                jq["p50"] <= GOAL_P50_MS and jq["p99"] <= GOAL_P99_MS,
            ),
            Row(
                "  from the enqueue call's start (INSERT + commit), ms",
                f"{jq['from_enqueue_start_p50']:.2f} / {jq['from_enqueue_start_p99']:.2f}",
                f"{pgq['from_enqueue_start_p50']:.2f} / {pgq['from_enqueue_start_p99']:.2f}",
                "",
                "",
                None,
            ),
        ]
    table += [
        Row(
            f"drain with the default INFO logs ({INFO_RUN[0]}x{INFO_RUN[1]}), jobs/s",
            f"{info:,.0f}",
            "-",
            f"{info_share:.2f}x of quiet",
            f">= {GOAL_INFO_SHARE}x of quiet",
            info_share >= GOAL_INFO_SHARE,
        ),
        Row(
            f"SQL limit (claim+complete_many, {limit_connections} conn, batch {limit_batch}),"
            " jobs/s",
            f"{limit:,.0f}",
            "-",
            f"{jq_best / limit:.2f}x (best drain)",
            f">= {GOAL_LIMIT_SHARE}x",
            jq_best / limit >= GOAL_LIMIT_SHARE,
        ),
    ]
    scaled: dict[str, dict[str, float]] = outcome["scale"]
    if scaled:
        slower = {name: scaled["big"][name] / scaled["empty"][name] for name in SCALE_MEASURES}
        table.append(
            Row(
                "big table: enqueue_batch / enqueue_job / claim / stats, x empty's time",
                " / ".join(f"{slower[name]:.2f}" for name in SCALE_MEASURES),
                "-",
                "",
                f"each <= {GOAL_SCALE}x",
                all(value <= GOAL_SCALE for value in slower.values()),
            )
        )
    memory: dict[str, float | None] = outcome["memory"]
    for name, goal in (
        ("jobqueue, books plugin", GOAL_RSS_BOOKS_MB),
        ("jobqueue, --no-plugins", GOAL_RSS_BARE_MB),
    ):
        value = memory.get(name)
        pgq_rss = memory.get("pgqueuer")
        table.append(
            Row(
                f"idle worker RSS, MB ({name.removeprefix('jobqueue, ')})",
                "-" if value is None else f"{value:.1f}",
                "-" if pgq_rss is None else f"{pgq_rss:.1f}",
                "",
                f"<= {goal:g}",
                None if value is None else value <= goal,
            )
        )
    return table


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    medians = drain_medians(outcome["drains"])
    return json.dumps(
        {
            "benchmark": "versus",
            "server": server,
            **outcome["facts"],
            "cpus": os.cpu_count(),
            "repeats": args.repeats,
            "pgqueuer_version": outcome["pgqueuer_version"],
            "load_before": outcome["load_before"],
            "load_after": outcome["load_after"],
            "table": [dataclasses.asdict(row) for row in rows(outcome)],
            "enqueue_jobs_per_second": outcome["enqueue"],
            "enqueue_samples": outcome["enqueue_samples"],
            "drain_medians": [
                {
                    "system": c[0],
                    "processes": c[1],
                    "width": c[2],
                    "logs": c[3],
                    "jobs_per_second": v,
                }
                for c, v in medians.items()
            ],
            "drains": [dataclasses.asdict(drain) for drain in outcome["drains"]],
            "info_and_quiet_pairs": [
                {"quiet": quiet, "info": info} for quiet, info in outcome["log_pairs"]
            ],
            "sql_limits": [
                {"connections": c, "batch": b, "jobs_per_second": v}
                for (c, b), v in outcome["limits"].items()
            ],
            "latency": [{"system": one.system, **one.summary()} for one in outcome["latency"]],
            "idle_rss_mb": outcome["memory"],
            "scale_seconds": outcome["scale"],
        },
        indent=2,
    )


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    facts: dict[str, str] = outcome["facts"]
    table = rows(outcome)
    width = max(len(row.name) for row in table)
    lines = [
        f"jobqueue vs PgQueuer {outcome['pgqueuer_version']}: {args.jobs:,} no-op jobs,"
        f" medians of {args.repeats}; {os.cpu_count()} CPUs; load average (1/5/15 min)"
        f" {outcome['load_before']} before, {outcome['load_after']} after",
        f"server: {server}, PostgreSQL {facts['server_version']}, fsync={facts['fsync']},"
        f" synchronous_commit={facts['synchronous_commit']},"
        f" shared_buffers={facts['shared_buffers']}",
        "",
        f"{'':<{width}}  {'jobqueue':>13}  {'PgQueuer':>13}  {'ratio':<20}  {'goal':<26}  met",
        "-" * (width + 86),
    ]
    for row in table:
        met = "" if row.met is None else "yes" if row.met else "NO"
        lines.append(
            f"{row.name:<{width}}  {row.jobqueue:>13}  {row.pgqueuer:>13}  {row.ratio:<20}"
            f"  {row.goal:<26}  {met}"
        )
    medians = drain_medians(outcome["drains"])
    lines += [
        "",
        "drain sweep (median jobs/s; worker and db CPU µs per job of the last repetition; other:"
        " the most any repetition saw):",
    ]
    runs: dict[tuple[str, int, int, str], list[Drain]] = {}
    for one in outcome["drains"]:
        runs.setdefault(one.config, []).append(one)
    for config, value in sorted(medians.items()):
        drain = runs[config][-1]
        shares = [one.other_share for one in runs[config] if one.other_share is not None]
        knob = "concurrency" if config[0] == "jobqueue" else "batch size"
        lines.append(
            f"  {config[0]:<9} {config[1]} proc, {knob} {config[2]:>3}, logs {config[3]:<7}"
            f" {value:>8,.0f}   worker {worker._cell(drain.worker_cpu_us, 5, ',.0f')}"
            f"  db {worker._cell(drain.db_cpu_us, 5, ',.0f')}"
            f"  other {worker._other(max(shares, default=None))}"
        )
    lines += ["", "SQL limit (job_claim + job_complete_many on plain connections, median jobs/s):"]
    for (connections, batch), value in outcome["limits"].items():
        lines.append(f"  {connections} connection(s), batch {batch:>3}: {value:>8,.0f}")
    if outcome["scale"]:
        lines += [
            "",
            f"a big table ({args.done_rows:,} done jobs, {args.delayed_rows:,} delayed) against"
            " an empty one, medians:",
        ]
        units = {"enqueue_batch": "µs/job", "enqueue_job": "µs/job", "claim": "µs/job"}
        for name in SCALE_MEASURES:
            empty, big = outcome["scale"]["empty"][name], outcome["scale"]["big"][name]
            unit = units.get(name, "µs/call")
            lines.append(
                f"  {name:<14} empty {empty * 1e6:>9,.1f} {unit:<7}  big {big * 1e6:>9,.1f}"
                f"  {big / empty:.2f}x"
            )
    lines.append(
        "(pickup: handler start minus the enqueue call's return; the enqueue's start row"
        " includes the INSERT and the commit's fsync. other: share of the machine other"
        " programs used during a drain; ! over 10%)"
    )
    return "\n".join(lines)


def plot(args: argparse.Namespace, outcome: dict[str, typing.Any], path: pathlib.Path) -> None:
    matplotlib = import_optional("matplotlib")
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    medians = drain_medians(outcome["drains"])
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for axes, system, widths, label in (
        (left, "jobqueue", args.concurrency, "--concurrency per process"),
        (right, "pgqueuer", args.batch_sizes, "--batch-size per process"),
    ):
        for processes in args.processes:
            values = [
                medians.get((system, processes, width, "warning"), float("nan")) for width in widths
            ]
            axes.plot(
                list(widths),
                values,
                marker="o",
                label=f"{processes} process{'es' if processes > 1 else ''}",
            )
        if system == "jobqueue":
            info = medians.get(("jobqueue", *INFO_RUN, "info"))
            if info is not None:
                axes.plot(
                    [INFO_RUN[1]],
                    [info],
                    marker="x",
                    linestyle="",
                    color="grey",
                    label="2 processes, INFO logs",
                )
        axes.set_xticks(list(widths), [str(width) for width in widths])
        axes.set_xlabel(label)
        axes.set_title(
            "jobqueue" if system == "jobqueue" else f"PgQueuer {outcome['pgqueuer_version']}"
        )
        axes.grid(True, alpha=0.3)
        axes.legend()
    limit = max(outcome["limits"].values(), default=None)
    if limit is not None:
        for axes in (left, right):
            axes.axhline(limit, color="black", linestyle="--", linewidth=0.8)
        left.set_ylim(top=limit * 1.12)
        left.annotate(
            "jobqueue's SQL limit (no worker)",
            (args.concurrency[0], limit),
            textcoords="offset points",
            xytext=(0, 4),
            fontsize=8,
        )
    left.set_ylabel("no-op jobs drained per second")
    left.set_ylim(bottom=0)
    figure.suptitle(
        f"Drain of no-op jobs, median of the repetitions; 2 CPUs, load {outcome['load_before']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


# --- command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="jobqueue against PgQueuer (see the module docstring)."
    )
    parser.add_argument(
        "--repeats", type=_common.int_between(1, 100), default=3, help="repetitions (median)"
    )
    parser.add_argument(
        "--jobs",
        type=_common.int_between(BATCH, 10_000_000),
        default=20_000,
        help="jobs per drain and batch enqueue",
    )
    parser.add_argument(
        "--single-jobs",
        type=_common.int_between(1, 1_000_000),
        default=2_000,
        help="jobs enqueued one at a time",
    )
    parser.add_argument(
        "--latency-jobs",
        type=_common.int_between(0, 100_000),
        default=200,
        help="jobs per pickup run; 0 skips it",
    )
    parser.add_argument(
        "--done-rows",
        type=_common.int_between(0, 100_000_000),
        default=1_000_000,
        help="finished jobs of the big-table part (with --delayed-rows 0 too: 0 skips it)",
    )
    parser.add_argument(
        "--delayed-rows",
        type=_common.int_between(0, 100_000_000),
        default=100_000,
        help="delayed jobs (run_at a day ahead) of the big-table part",
    )
    parser.add_argument(
        "--plot", type=pathlib.Path, default=BENCH_DIR / "versus.png", help="where to draw the plot"
    )
    parser.add_argument(
        "--processes",
        type=_common.int_between(1, 64),
        nargs="+",
        default=list(PROCESSES),
        help="worker processes of the drain sweep, both queues",
    )
    parser.add_argument(
        "--concurrency",
        type=_common.int_between(1, 10_000),
        nargs="+",
        default=list(JQ_CONCURRENCY),
        help="jobqueue's --concurrency values of the drain sweep",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_common.int_between(1, 10_000),
        nargs="+",
        default=list(PGQ_BATCH_SIZES),
        help="PgQueuer's --batch-size values of the drain sweep",
    )
    parser.add_argument("--no-plot", action="store_true", help="draw no plot")
    parser.add_argument(
        "--save-json", type=pathlib.Path, help="also write the JSON report to this file"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    args.local_server = not os.environ.get(db.DATABASE_URL_ENV)
    return args


def report_and_plot(args: argparse.Namespace) -> _common.Report[dict[str, typing.Any]]:
    def report(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
        if not args.no_plot:
            plot(args, outcome, args.plot)
        if args.save_json:
            args.save_json.write_text(report_json(args, server, outcome) + "\n")
        return (
            report_json(args, server, outcome) if args.json else report_table(args, server, outcome)
        )

    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import_optional("pgqueuer")  # fail at once, before the server starts
    if not args.no_plot:
        import_optional("matplotlib")
    report = report_and_plot(args)
    return _common.main(args, run, report, report)


if __name__ == "__main__":
    sys.exit(main())
