#!/usr/bin/env python3
"""Does the wake-up NOTIFY serialise the commits of single enqueues? (issue 24, part 5)

Every statement that leaves jobs pending fires ``jobs_record_change`` (migration 0008),
which calls ``pg_notify('jobqueue_ready', queue)`` once per queue (since migration 0010,
unless the statement is a producer's own enqueue, whose producer notifies after the
commit). At commit PostgreSQL
queues a transaction's notifications under one heavyweight lock for the whole server
(``PreCommit_Notify``: "database 0", access exclusive), held until the transaction has
ended, so across the commit record's flush: notifying committers cannot share an fsync.

Producers are ``Queue.enqueue_job`` calls of a no-op job, each its own transaction, one
after another, as an application does: ``--producers`` (1, 8 and 32) asyncio tasks at
once, each with a ``Queue`` of its own (so each always uses its own connection), spread
over ``--processes`` (2) producer processes (one Python process alone would be the limit:
the question is the database's side). Each measurement runs them for ``--seconds`` (2) and
reports jobs/s and the enqueue call's latency (its commit included) p50/p99, for these
variants of the same scratch database, switched between measurements:

- ``s``: as shipped (migration 0010): the producer's own enqueue is quiet in the trigger
  and the producer sends the notification after the commit, coalesced (variant ``e``
  made part of ``Queue``); every other variant enqueues in an application's transaction
  (``conn=``, an autocommit connection of its own), where the trigger notifies;
- ``a``: the trigger notifies, per statement: single enqueues before migration 0010;
- ``b``: no NOTIFY at all: ``jobs_record_change`` made again from the migration's own text
  (read from the migration file at run time, not copied here) with the ``pg_notify`` loop
  cut out; what any change to the NOTIFY could gain at most;
- ``c``: the NOTIFY sent once per transaction at its commit instead of per statement (a
  deferred constraint trigger): for a single enqueue the statement is the transaction, so
  this is the same one notification under the same lock as ``a``, measured to show it;
- ``d`` (prototype): no NOTIFY in the enqueue's transaction; the producer sends
  ``pg_notify`` right after the commit, in a transaction of its own on a second
  connection, one per job. That transaction writes no WAL, so its commit does not wait for
  a flush: the lock is held for microseconds. Correct by construction: the job is visible
  before the notification is sent;
- ``e`` (the prototype of ``s``): as ``d``, but coalesced per producer process: one notifier task
  sends the next ``pg_notify`` as soon as the last one is done whenever a commit has
  finished since that one started; a job's commit is always followed by a notification
  that started after it.

The variants take turns within each repetition (``--repeats``, 3; the order rotates), and
medians are reported (``--repeats 0``: the pickup probe alone). Before each measurement
``jobs`` is truncated and a ``CHECKPOINT`` taken, so every one starts alike. Also reported
per measurement: how many producer backends were, on average, waiting on the notify lock
(``Lock``/``object`` in ``pg_stat_activity``, sampled every 20 ms) and on the WAL flush
(``IO``/``WALSync``, ``LWLock``/``WALWrite``), the server's and the producers' CPU per job,
and "other": the share of the machine used by other programs (over 10%: marked ``!``,
re-run).

Pickup (``--probe-seconds``, 2; 0 skips it): one idle ``jobqueue worker`` (LISTEN,
``--concurrency 8``) on a queue of its own, ``bench_pickup``; while the producers load
``default`` as above, a probe enqueues one job to ``bench_pickup`` every 10-30 ms the
variant's way and the handler sends its start time over UDP (``bench/versus_workers.py``):
pickup after the enqueue call returned and from its start. For every variant that notifies
(``b`` never wakes a worker: its jobs wait for the poll interval). With ``--drain`` the
worker (``--concurrency 32``) works on ``default`` instead and drains the producers' jobs
too, the probe's among them; the jobs it had not run when the producers stopped are shown
(backlog): pickup then also waits behind them.

    .venv-bench/bin/python bench/notify.py                       # about 2 minutes
    .venv-bench/bin/python bench/notify.py --probe-seconds 0     # throughput only, 1.5 min
    .venv-bench/bin/python bench/notify.py --repeats 0           # the pickup probe only
    .venv-bench/bin/python bench/notify.py --variants a b --producers 32 --probe-seconds 0
    .venv-bench/bin/python bench/notify.py --drain --variants a e --repeats 1 --json
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import pathlib
import random
import re
import statistics
import sys
import tempfile
import time
import typing

import psycopg
import psycopg.errors

import _common
import versus
import versus_workers
import worker
from jobqueue import checks, cli, db, migrations, settings
from jobqueue import queue as queue_module

BENCH_DIR: typing.Final = pathlib.Path(__file__).resolve().parent
NOOP: typing.Final = "jobqueue.noop"
PICKUP: typing.Final = "bench.pickup"
LOAD_QUEUE: typing.Final = checks.DEFAULT_QUEUE
PROBE_QUEUE: typing.Final = "bench_pickup"
CHANNEL: typing.Final = "jobqueue_ready"
NOTIFY: typing.Final = "SELECT pg_notify('jobqueue_ready', %s)"
APP_PREFIX: typing.Final = "bench-notify-"
WARM_UP_CALLS: typing.Final = 6  # past psycopg's prepare threshold (5)
SAMPLE_SECONDS: typing.Final = 0.02
PROBE_PAUSE_MS: typing.Final = (10.0, 30.0)
PICKUP_TIMEOUT_SECONDS: typing.Final = 10.0
DRAIN_TIMEOUT_SECONDS: typing.Final = 120.0
PROBE_CONCURRENCY: typing.Final = 8
DRAIN_CONCURRENCY: typing.Final = 32
CONNECTIONS_SPARE: typing.Final = 20  # the benchmark's own, the worker's, superusers'
SERVER_SETTINGS: typing.Final = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "commit_delay",
    "max_connections",
)
UNFINISHED: typing.Final = "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
RESULT_MARK: typing.Final = "@@ "  # a producer process's protocol lines on its stdout
RESULT_LIMIT: typing.Final = 1 << 26  # a result line holds every call's latency

# The trigger function as the migrations leave it, the notify loop in it, and the body.
FUNCTION: typing.Final = re.compile(
    r"CREATE (?:OR REPLACE )?FUNCTION jobs_record_change\(\)[^$]*\$\$(?P<body>.*?)\$\$;", re.S
)
# The loop that notifies of jobs left pending (since migration 0011 the function has a
# second one, for room freed in limited queues, which enqueues never reach).
NOTIFY_LOOP: typing.Final = re.compile(
    r"\n[ \t]*FOR ready_queue IN\s+SELECT DISTINCT queue FROM new_rows"
    r" WHERE status = 'pending'.*?END LOOP;",
    re.S,
)

# Variant c: the notification queued by a deferred trigger, at commit, once per row (one
# job, one row: once per transaction). Bench-only, in the scratch database.
AT_COMMIT_FUNCTION: typing.Final = """
CREATE FUNCTION bench_notify_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobqueue_ready', NEW.queue);
    RETURN NULL;
END
$$
"""
AT_COMMIT_TRIGGER: typing.Final = """
CREATE CONSTRAINT TRIGGER bench_notify_at_commit AFTER INSERT ON jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION bench_notify_at_commit()
"""
DROP_AT_COMMIT_TRIGGER: typing.Final = "DROP TRIGGER IF EXISTS bench_notify_at_commit ON jobs"

# What the producers' backends are doing: waiting on the notify lock (a heavyweight lock
# on an object: nothing else in this workload takes one), on the WAL flush, or not.
WAITS: typing.Final = """
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'object'),
       count(*) FILTER (WHERE (wait_event_type = 'IO' AND wait_event IN ('WALSync', 'WALWrite'))
                           OR (wait_event_type = 'LWLock' AND wait_event = 'WALWrite'))
FROM pg_stat_activity
WHERE application_name LIKE %s AND state = 'active'
"""

Connection: typing.TypeAlias = _common.Connection


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    key: str
    label: str
    schema: typing.Literal["shipped", "quiet", "at_commit"]
    notify: typing.Literal["none", "after", "coalesced", "producer"]

    @property
    def wakes_workers(self) -> bool:
        return self.schema != "quiet" or self.notify != "none"


VARIANTS: typing.Final = {
    variant.key: variant
    for variant in (
        Variant("s", "as shipped: the producer's coalesced wake-up", "shipped", "producer"),
        Variant("a", "trigger NOTIFY per statement (before 0010)", "shipped", "none"),
        Variant("b", "no NOTIFY", "quiet", "none"),
        Variant("c", "NOTIFY once per transaction, at commit", "at_commit", "none"),
        Variant("d", "NOTIFY after the commit, per job", "quiet", "after"),
        Variant("e", "NOTIFY after the commit, coalesced", "quiet", "coalesced"),
    )
}


# --- the schema's variants --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TriggerTexts:
    shipped: str  # CREATE OR REPLACE FUNCTION jobs_record_change() as the migrations have it
    quiet: str  # the same, its pg_notify loop cut out
    body: str  # the function's body, as pg_proc.prosrc holds it


def trigger_texts() -> TriggerTexts:
    """``jobs_record_change`` as the last core migration that defines it has it, read from
    the migration files, and the same without its notify loop."""
    found = None
    for migration in migrations.load_migrations():
        for match in FUNCTION.finditer(migration.sql):
            found = match
    if found is None:
        raise RuntimeError("no migration defines jobs_record_change()")
    shipped = found[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    quiet, cuts = NOTIFY_LOOP.subn("", shipped)
    if cuts != 1 or quiet.count("pg_notify") != shipped.count("pg_notify") - 1:
        raise RuntimeError(
            "jobs_record_change() no longer has the one 'FOR ready_queue IN SELECT DISTINCT"
            " queue FROM new_rows WHERE status = 'pending' ... pg_notify ... END LOOP;' this"
            " benchmark cuts out: update bench/notify.py"
        )
    return TriggerTexts(shipped, quiet, found["body"])


async def check_shipped(conn: Connection, texts: TriggerTexts) -> None:
    """The migrated database's function is the one read from the migration files."""
    cursor = await conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'jobs_record_change'")
    rows = await cursor.fetchall()
    if [row[0] for row in rows] != [texts.body]:
        raise RuntimeError("the migrated jobs_record_change() is not the migration file's")


async def set_schema(conn: Connection, texts: TriggerTexts, variant: Variant) -> None:
    await conn.execute(texts.shipped if variant.schema == "shipped" else texts.quiet)
    await conn.execute(DROP_AT_COMMIT_TRIGGER)
    if variant.schema == "at_commit":
        await conn.execute(AT_COMMIT_TRIGGER)


async def fresh_table(conn: Connection) -> bool:
    """An empty ``jobs`` and (when allowed) a checkpoint, so that every measurement starts
    alike: no WAL of the one before still being written out, full-page writes alike.
    Whether the checkpoint was taken."""
    await conn.execute("TRUNCATE jobs")
    try:
        await conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


# --- enqueueing the variant's way (producer processes and the probe) --------------------


class Coalescer:
    """Variant e: one ``pg_notify`` at a time per process and queue. ``poke()`` after a
    commit; the notifier sends the next notification once the one in flight is done. A
    notification that starts after a commit was acknowledged is delivered after the job is
    visible, so each job is covered by the first one sent after its commit."""

    def __init__(self, conn: Connection, queue_name: str) -> None:
        self._conn = conn
        self._queue_name = queue_name
        self._wanted = asyncio.Event()
        self.sent = 0

    def poke(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self._conn.execute(NOTIFY, [self._queue_name], prepare=True)
            self.sent += 1


@dataclasses.dataclass(slots=True)
class Enqueuer:
    """One producer: its process's ``Queue`` (variant s: shared as an application's tasks
    share one, its pool as large as they are many, its wake-ups coalesced across them) and
    a connection of its own the other variants enqueue on (``conn=``: the trigger notifies
    unless the variant's schema cut that out) and variant d notifies on after the commit."""

    queue: queue_module.Queue
    conn: Connection
    coalescer: Coalescer
    queue_name: str
    notifies: int = 0

    async def enqueue(
        self, variant: Variant, type_name: str = NOOP, payload: typing.Any = None
    ) -> None:
        if variant.notify == "producer":
            await self.queue.enqueue_job(type_name, payload, queue=self.queue_name)
            return
        await self.queue.enqueue_job(type_name, payload, queue=self.queue_name, conn=self.conn)
        if variant.notify == "after":
            await self.conn.execute(NOTIFY, [self.queue_name], prepare=True)
            self.notifies += 1
        elif variant.notify == "coalesced":
            self.coalescer.poke()


@contextlib.asynccontextmanager
async def enqueuers(
    url: str, count: int, queue_name: str
) -> collections.abc.AsyncIterator[tuple[list[Enqueuer], Coalescer]]:
    """``count`` producers and their process's coalescer (notifier task running), warmed up:
    every statement past psycopg's prepare threshold."""
    async with contextlib.AsyncExitStack() as stack:
        coalescer = Coalescer(await stack.enter_async_context(await db.connect(url)), queue_name)
        # Its own enqueues: one on the kept connection and the others' leases at once, and
        # the wake-up's lease.
        pool = db.make_pool(url, min_size=count + 2, max_size=count + 2)
        await pool.open(wait=True)
        stack.push_async_callback(pool.close)
        queue = await stack.enter_async_context(queue_module.Queue(pool=pool))
        made = []
        for _ in range(count):
            conn = await stack.enter_async_context(await db.connect(url))
            made.append(Enqueuer(queue, conn, coalescer, queue_name))
        notifier = asyncio.create_task(coalescer.run())
        try:
            for _ in range(WARM_UP_CALLS):
                await asyncio.gather(*(enqueuer.enqueue(VARIANTS["d"]) for enqueuer in made))
                await asyncio.gather(*(enqueuer.enqueue(VARIANTS["s"]) for enqueuer in made))
                coalescer.poke()
            yield made, coalescer
        finally:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifier


async def produce(
    producers: list[Enqueuer], coalescer: Coalescer, variant: Variant, seconds: float
) -> dict[str, typing.Any]:
    """Every producer enqueues one job after another for ``seconds``; the jobs done, the
    time from the start to the last one's end, each call's milliseconds."""
    latencies: list[float] = []
    ends: list[float] = []

    def sent() -> int:
        wake_ups = producers[0].queue._wake_ups.sent  # the process's one Queue
        return coalescer.sent + wake_ups + sum(producer.notifies for producer in producers)

    sent_before = sent()
    started = time.monotonic()
    deadline = started + seconds

    async def one(producer: Enqueuer) -> None:
        while (called := time.monotonic()) < deadline:
            await producer.enqueue(variant)
            returned = time.monotonic()
            latencies.append(round((returned - called) * 1000, 3))
        ends.append(time.monotonic())

    await asyncio.gather(*(one(producer) for producer in producers))
    notifies = sent() - sent_before
    return {
        "jobs": len(latencies),
        "elapsed": max(ends) - started,
        "latencies_ms": latencies,
        "notifies": notifies,
    }


# --- producer processes -----------------------------------------------------------------


async def child_main(producers: int) -> None:
    """A producer process (``notify.py --child N``): ``N`` producers on ``$DATABASE_URL``.
    Says ``ready`` once warmed up, then for each ``go <variant> <seconds>`` on stdin runs
    them and answers with one JSON line; stops on ``quit`` or the end of stdin."""
    url = os.environ[db.DATABASE_URL_ENV]
    logging.getLogger("jobqueue").setLevel(logging.WARNING)  # as in the benchmark itself
    async with enqueuers(url, producers, LOAD_QUEUE) as (made, coalescer):
        print(RESULT_MARK + "ready", flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                return
            _, key, seconds = words
            result = await produce(made, coalescer, VARIANTS[key], float(seconds))
            print(RESULT_MARK + json.dumps(result), flush=True)


async def read_result(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    while True:
        line = (await process.stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"producer process {process.pid} ended ({process.returncode})")
        if line.startswith(RESULT_MARK):
            return line[len(RESULT_MARK) :].strip()


_child_numbers = itertools.count(1)


@contextlib.asynccontextmanager
async def producer_processes(
    url: str, producers: int, processes: int
) -> collections.abc.AsyncIterator[list[worker.WorkerProcess]]:
    """``producers`` producers spread over ``processes`` processes, ready; each process's
    connections are named ``bench-notify-N`` (``PGAPPNAME``)."""
    shares = [
        producers // processes + (1 if n < producers % processes else 0) for n in range(processes)
    ]
    started: list[worker.WorkerProcess] = []
    try:
        for share in (share for share in shares if share):
            name = f"{APP_PREFIX}{next(_child_numbers)}"
            environment = dict(os.environ) | {db.DATABASE_URL_ENV: url, "PGAPPNAME": name}
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH_DIR / "notify.py"),
                "--child",
                str(share),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=RESULT_LIMIT,
                env=environment,
                start_new_session=True,
            )
            started.append(worker.WorkerProcess(name, process, None))
        for child in started:
            if await read_result(child.process) != "ready":
                raise RuntimeError(f"producer process {child.worker_id} did not start")
        yield started
    finally:
        for child in started:
            stdin = child.process.stdin
            if stdin is not None and not stdin.is_closing():
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    stdin.write(b"quit\n")
                    stdin.close()
        await worker.stop_workers(started)


# --- one measurement --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    variant: str
    producers: int
    repeat: int
    jobs: int
    jobs_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lock_waiters: float  # mean producer backends waiting on the notify lock
    wal_waiters: float  # mean producer backends waiting on the WAL flush
    notifies_per_job: float | None  # the producers' own pg_notify calls (d, e)
    client_cpu_us: float | None
    server_cpu_us: float | None
    other_share: float | None
    load: float  # 1-minute load average at the end
    backlog: int | None = None  # --drain: jobs not yet done when the producers stopped
    pickup_after_commit_ms: list[float] = dataclasses.field(default_factory=list)
    pickup_from_start_ms: list[float] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict[str, typing.Any]:
        fields = dataclasses.asdict(self)
        for name in ("pickup_after_commit_ms", "pickup_from_start_ms"):
            samples = fields.pop(name)
            if samples:
                fields[name] = {
                    "probes": len(samples),
                    "p50": _common.percentile(samples, 0.5),
                    "p99": _common.percentile(samples, 0.99),
                    "max": max(samples),
                }
        return fields


async def sample_waits(conn: Connection, stop: asyncio.Event) -> tuple[float, float]:
    """Mean producer backends waiting on the notify lock and on the WAL, until ``stop``."""
    lock: list[int] = []
    wal: list[int] = []
    while not stop.is_set():
        cursor = await conn.execute(WAITS, [APP_PREFIX + "%"])
        row = await cursor.fetchone()
        assert row is not None
        lock.append(int(row[0]))
        wal.append(int(row[1]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
    return (statistics.fmean(lock), statistics.fmean(wal)) if lock else (0.0, 0.0)


@dataclasses.dataclass(slots=True)
class Probe:
    """Pickup: one job at a time to the idle worker, the variant's way, the handler's start
    sent back over UDP (``versus_workers.pickup``)."""

    enqueuer: Enqueuer
    pickups: typing.Any  # versus._Pickups
    workers: list[worker.WorkerProcess]
    sequence: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    async def run(self, variant: Variant, seconds: float) -> tuple[list[float], list[float]]:
        after_commit: list[float] = []
        from_start: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            worker.check_alive(self.workers)
            sequence = next(self.sequence)
            called = time.monotonic()
            await self.enqueuer.enqueue(variant, PICKUP, {"seq": sequence})
            returned = time.monotonic()
            async with asyncio.timeout(PICKUP_TIMEOUT_SECONDS):
                while True:
                    seen, started = await self.pickups.received.get()
                    if seen == str(sequence):
                        break
            after_commit.append((started - returned) * 1000)
            from_start.append((started - called) * 1000)
            await asyncio.sleep(random.uniform(*PROBE_PAUSE_MS) / 1000)
        return after_commit, from_start


@dataclasses.dataclass(slots=True)
class Bench:
    url: str
    conn: Connection
    sampler: Connection
    texts: TriggerTexts
    local_server: bool
    seconds: float
    checkpoints: bool = True

    async def measure(
        self,
        children: list[worker.WorkerProcess],
        variant: Variant,
        producers: int,
        repeat: int,
        probe: Probe | None = None,
        drain: bool = False,
    ) -> Measurement:
        await set_schema(self.conn, self.texts, variant)
        self.checkpoints = await fresh_table(self.conn) and self.checkpoints
        # the probe's worker too: its CPU and its backends' are this run's, not "other"
        meter = worker.CpuMeter([*children, *(probe.workers if probe else [])], self.local_server)
        await meter.start(self.conn)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:  # on an error, no task is left behind
            sampling = group.create_task(sample_waits(self.sampler, stop))
            for child in children:
                assert child.process.stdin is not None
                child.process.stdin.write(f"go {variant.key} {self.seconds}\n".encode())
            probing = group.create_task(probe.run(variant, self.seconds)) if probe else None
            try:
                results = [json.loads(await read_result(child.process)) for child in children]
                # counted as the producers stop, before the probe has seen its last pickup
                backlog = await _common.count(self.conn, UNFINISHED) if drain else None
            finally:
                stop.set()
        lock_waiters, wal_waiters = sampling.result()
        after_commit, from_start = probing.result() if probing else ([], [])
        await meter.stop(self.conn)
        if drain:
            await self.wait_drained(probe.workers if probe else [])
        latencies = [value for result in results for value in result["latencies_ms"]]
        jobs = sum(int(result["jobs"]) for result in results)
        notifies = sum(int(result["notifies"]) for result in results)
        return Measurement(
            variant.key,
            producers,
            repeat,
            jobs,
            sum(result["jobs"] / result["elapsed"] for result in results),
            _common.percentile(latencies, 0.5),
            _common.percentile(latencies, 0.99),
            max(latencies),
            lock_waiters,
            wal_waiters,
            notifies / jobs if variant.notify != "none" else None,
            None if meter.worker_seconds is None else meter.worker_seconds / jobs * 1e6,
            None if meter.server_seconds is None else meter.server_seconds / jobs * 1e6,
            meter.other_share,
            os.getloadavg()[0],
            backlog,
            after_commit,
            from_start,
        )

    async def wait_drained(self, workers: list[worker.WorkerProcess]) -> None:
        """Until the worker has run every job (``--drain``), so the next TRUNCATE takes none
        from under it."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while await _common.count(self.conn, UNFINISHED):
            worker.check_alive(workers)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not drain in {DRAIN_TIMEOUT_SECONDS:g}s")
            await asyncio.sleep(0.05)


def turns(keys: list[str], repeat: int) -> list[str]:
    """The variants in this repetition's order: rotated by one each time."""
    shift = repeat % len(keys)
    return keys[shift:] + keys[:shift]


async def throughput(bench: Bench, args: argparse.Namespace) -> list[Measurement]:
    measured: list[Measurement] = []
    if not args.repeats:
        return measured
    for producers in args.producers:
        processes = min(args.processes, producers)
        async with producer_processes(bench.url, producers, processes) as children:
            for repeat in range(args.repeats):
                versus.progress(f"{producers} producers, repetition {repeat + 1} of {args.repeats}")
                for key in turns(args.variants, repeat):
                    item = await bench.measure(children, VARIANTS[key], producers, repeat)
                    measured.append(item)
    return measured


async def pickups(bench: Bench, args: argparse.Namespace) -> list[Measurement]:
    """The probe's runs: every variant that notifies, at each number of producers."""
    keys = [key for key in args.variants if VARIANTS[key].wakes_workers]
    if not keys or not args.probe_seconds:
        return []
    queue_name = LOAD_QUEUE if args.drain else PROBE_QUEUE
    concurrency = DRAIN_CONCURRENCY if args.drain else PROBE_CONCURRENCY
    options = ["--queue", queue_name, "--concurrency", str(concurrency)]
    probing = dataclasses.replace(bench, seconds=args.probe_seconds)
    measured = []
    with tempfile.TemporaryDirectory(prefix="jobqueue-bench-notify-") as folder:
        async with (
            versus.pickup_listener() as (port, protocol),
            enqueuers(bench.url, 1, queue_name) as ([enqueuer], _),
        ):
            os.environ[versus_workers.PICKUP_PORT_ENV] = str(port)
            try:
                async with worker.running_workers(
                    bench.url, 1, options, versus.QUIET, pathlib.Path(folder)
                ) as workers:
                    await worker.wait_idle(bench.conn, workers, listen=True)
                    probe = Probe(enqueuer, protocol, workers)
                    for producers in args.producers:
                        versus.progress(f"pickup probe, {producers} producers")
                        processes = min(args.processes, producers)
                        async with producer_processes(bench.url, producers, processes) as children:
                            for key in keys:
                                item = await probing.measure(
                                    children, VARIANTS[key], producers, 0, probe, drain=args.drain
                                )
                                measured.append(item)
            finally:
                del os.environ[versus_workers.PICKUP_PORT_ENV]
    return measured


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    # the worker imports versus_workers (the pickup handler, and the no-op one)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    texts = trigger_texts()
    load_before = os.getloadavg()
    async with _common.scratch_database(server_url, "jobqueue_bench_notify") as url:
        conn = await db.connect(url)
        sampler = await db.connect(url)
        async with conn, sampler:
            await migrations.migrate(conn)
            await check_shipped(conn, texts)
            await conn.execute(AT_COMMIT_FUNCTION)
            facts = await _common.server_settings(conn, SERVER_SETTINGS)
            needed = 2 * max(args.producers) + 3 * args.processes + CONNECTIONS_SPARE
            if int(facts["max_connections"]) < needed:
                raise SystemExit(
                    f"max_connections is {facts['max_connections']}; {needed} are needed"
                )
            bench = Bench(url, conn, sampler, texts, args.local_server, args.seconds)
            measured = await throughput(bench, args)
            probed = await pickups(bench, args)
            await set_schema(conn, texts, VARIANTS["a"])
    return {
        "facts": facts,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "checkpoints": bench.checkpoints,
        "throughput": measured,
        "pickup": probed,
    }


# --- output -----------------------------------------------------------------------------


def medians(
    measured: list[Measurement],
) -> dict[tuple[int, str], dict[str, float | None]]:
    """Per (producers, variant): the median of each figure over the repetitions, "other"
    the largest."""
    groups: dict[tuple[int, str], list[Measurement]] = {}
    for item in measured:
        groups.setdefault((item.producers, item.variant), []).append(item)
    summary: dict[tuple[int, str], dict[str, float | None]] = {}
    for key, items in groups.items():
        row: dict[str, float | None] = {}
        for name in (
            "jobs_per_second",
            "p50_ms",
            "p99_ms",
            "lock_waiters",
            "wal_waiters",
            "notifies_per_job",
            "client_cpu_us",
            "server_cpu_us",
        ):
            values = [getattr(item, name) for item in items if getattr(item, name) is not None]
            row[name] = statistics.median(values) if values else None
        others = [item.other_share for item in items if item.other_share is not None]
        row["other_share"] = max(others) if others else None
        summary[key] = row
    return summary


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    summary = medians(outcome["throughput"])
    return json.dumps(
        {
            "benchmark": "notify",
            "server": server,
            **outcome["facts"],
            "cpus": outcome["cpus"],
            "load_before": outcome["load_before"],
            "load_after": outcome["load_after"],
            "seconds": args.seconds,
            "repeats": args.repeats,
            "processes": args.processes,
            "variants": {key: VARIANTS[key].label for key in args.variants},
            "medians": [
                {"producers": producers, "variant": key, **row}
                for (producers, key), row in summary.items()
            ],
            "throughput": [item.as_json() for item in outcome["throughput"]],
            "pickup": [item.as_json() for item in outcome["pickup"]],
        },
        indent=2,
    )


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    facts = outcome["facts"]
    before, after = outcome["load_before"], outcome["load_after"]
    lines = [
        "single enqueues (Queue.enqueue_job, one job a transaction) against the wake-up NOTIFY",
        f"server: {server}, PostgreSQL {facts['server_version']}, fsync={facts['fsync']},"
        f" synchronous_commit={facts['synchronous_commit']},"
        f" wal_sync_method={facts['wal_sync_method']}, commit_delay={facts['commit_delay']};"
        f" {outcome['cpus']} CPUs",
        f"load average before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f},"
        f" after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f};"
        f" {args.seconds:g} s a measurement, medians of {args.repeats},"
        f" producers over up to {args.processes} processes"
        + ("" if outcome["checkpoints"] else "; no CHECKPOINT between them (not allowed)"),
        "",
        "variants:",
        *(f"  {key}  {VARIANTS[key].label}" for key in args.variants),
    ]
    if outcome["throughput"]:
        lines += throughput_table(args, outcome["throughput"])
    if outcome["pickup"]:
        lines += pickup_table(args, outcome["pickup"])
    return "\n".join(lines)


def throughput_table(args: argparse.Namespace, measured: list[Measurement]) -> list[str]:
    lines = [
        "",
        "prod var    jobs/s  vs a  p50 ms  p99 ms  lock wait  WAL wait  notify/job"
        "  client µs  db µs  other",
        "-" * 98,
    ]
    summary = medians(measured)
    for producers in args.producers:
        base = summary.get((producers, "a"), {}).get("jobs_per_second")
        for key in args.variants:
            row = summary.get((producers, key))
            if row is None:
                continue
            rate = row["jobs_per_second"]
            ratio = None if base is None or rate is None else rate / base
            lines.append(
                f"{producers:>4} {key:>3}  "
                + worker._cell(rate, 8, ",.0f")
                + worker._cell(ratio, 6, ".2f")
                + worker._cell(row["p50_ms"], 8, ".2f")
                + worker._cell(row["p99_ms"], 8, ".2f")
                + worker._cell(row["lock_waiters"], 11, ".1f")
                + worker._cell(row["wal_waiters"], 10, ".1f")
                + worker._cell(row["notifies_per_job"], 12, ".2f")
                + worker._cell(row["client_cpu_us"], 11, ",.0f")
                + worker._cell(row["server_cpu_us"], 7, ",.0f")
                + "   "
                + worker._other(row["other_share"])
            )
    lines += [
        "p50/p99: the enqueue call, its commit included (d: and its pg_notify call)",
        "lock/WAL wait: producer backends waiting on the notify lock / on the WAL flush, mean",
        "notify/job: the producers' own pg_notify calls; client/db µs: CPU per job of the",
        "producer processes / of the server backends serving them; other: the machine's share",
        "used by other programs, the largest of the repetitions (over 10%: !, re-run)",
    ]
    return lines


def pickup_table(args: argparse.Namespace, measured: list[Measurement]) -> list[str]:
    mode = (
        f"one worker (--concurrency {DRAIN_CONCURRENCY}) draining the producers' queue"
        if args.drain
        else f"one idle worker (--concurrency {PROBE_CONCURRENCY}) on a queue of its own"
    )
    lines = [
        "",
        f"pickup: {mode}; one probe job every 10-30 ms for {args.probe_seconds:g} s while"
        " the producers enqueue; ms",
        "prod var  probes  after commit p50    p99    max  from start p50    p99"
        "   load jobs/s  other" + ("  backlog" if args.drain else ""),
        "-" * 98,
    ]
    for item in measured:
        after_commit, from_start = item.pickup_after_commit_ms, item.pickup_from_start_ms
        lines.append(
            f"{item.producers:>4} {item.variant:>3}  {len(after_commit):>6}"
            + worker._cell(_common.percentile(after_commit, 0.5), 16, ".2f")
            + worker._cell(_common.percentile(after_commit, 0.99), 7, ".2f")
            + worker._cell(max(after_commit), 7, ".2f")
            + worker._cell(_common.percentile(from_start, 0.5), 16, ".2f")
            + worker._cell(_common.percentile(from_start, 0.99), 7, ".2f")
            + worker._cell(item.jobs_per_second, 14, ",.0f")
            + "   "
            + worker._other(item.other_share)
            + ("" if item.backlog is None else f"{item.backlog:>9,}")
        )
    lines.append(
        "after commit: the handler's start less the enqueue call's return; from start:"
        " less the call's start (the commit's wait included)"
        + ("; backlog: jobs not yet run when the producers stopped" if args.drain else "")
    )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--producers",
        type=_common.int_between(1, 200),
        nargs="+",
        default=[1, 8, 32],
        help="producers at once, one run each (default 1 8 32)",
    )
    parser.add_argument(
        "--processes",
        type=_common.int_between(1, 64),
        default=2,
        help="producer processes the producers are spread over (at most one each)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=list(VARIANTS),
        help="s shipped (the producer wakes), a trigger per statement, b no NOTIFY, c at commit,"
        " d after commit, e after commit coalesced",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="a measurement's length")
    parser.add_argument(
        "--repeats",
        type=_common.int_between(0, 100),
        default=3,
        help="repetitions of the throughput measurements; 0: the pickup probe only",
    )
    parser.add_argument(
        "--probe-seconds",
        type=float,
        default=2.0,
        help="the pickup probe's length per variant and producers; 0 skips it",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="the probe's worker drains the producers' queue instead of idling on its own",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if not 0.2 <= args.seconds <= 600 or not 0 <= args.probe_seconds <= 600:
        parser.error("--seconds must be 0.2-600 s and --probe-seconds 0-600 s")
    args.local_server = not os.environ.get(db.DATABASE_URL_ENV)  # else no server CPU
    return args


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--child"]:
        loop = cli.event_loop_factory(settings.EVENT_LOOP.from_env())
        with asyncio.Runner(loop_factory=loop) as runner:
            runner.run(child_main(int(arguments[1])))
        return 0
    return _common.main(parse_args(arguments), run, report_json, report_table)


if __name__ == "__main__":
    sys.exit(main())
