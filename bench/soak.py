#!/usr/bin/env python3
"""Hours of load without bloat (issue 24): a soak of jobqueue and PgQueuer, one after the
other, on the same server, at the same fixed rate.

Each system gets a scratch database of its own (``bench/versus.py`` sets them up alike: jobqueue
migrated as shipped, PgQueuer from ``Queries.install()``) and ``--processes`` worker processes
(jobqueue ``--concurrency``, PgQueuer ``--batch-size``, each its best drain configuration of
``bench/versus.py``). For ``--minutes`` (30 for the figures; ``--smoke`` is a 2-minute run
with everything scaled down) the benchmark:

- **enqueues** ``--rate`` jobs a second, a batch every 100 ms on a fixed schedule (a late tick
  enqueues what it owes). Each job's payload is the monotonic time it was enqueued at; its
  handler sends that back with its own start time over UDP (``versus_workers``), which gives
  **enqueue -> start**;
- **probes the claim** every 100 ms: a claim of one job, timed, the way the system's workers
  claim, on a connection of its own (jobqueue ``worker.Claimer``, which claims after its
  last place while claims are slow; PgQueuer ``Queries.dequeue``), and the job completed if
  it got one: what a claim costs at that
  moment, dead index entries and all, whether or not the workers left a job to find (at a
  rate they keep up with they seldom do);
- **prunes** finished jobs older than ``--retention`` seconds every 5 s (jobqueue
  ``prune_finished_jobs``; PgQueuer deletes its finished jobs itself and the benchmark
  prunes its log table, ``pgqueuer_log``, alike);
- **holds a REPEATABLE READ transaction** open for ``--hold-seconds`` (120) every
  ``--hold-every`` seconds (300), starting at the first such mark: an analytics query that
  keeps vacuum from removing anything newer than its snapshot;
- **samples** every 10 s: table and index sizes, live and dead tuples and autovacuum runs of
  every table of the system's database (``pg_stat_user_tables``), claim p50/p99 and enqueue ->
  start p50/p99 over the 10 s, and the backlog (jobs waiting: jobqueue's statistics,
  PgQueuer's ``queued`` rows), which is also read every second to time each hold's recovery.

The goals of issue 24, per system: total size at the end <= 1.5x the size at the first hold
(after the steady first window); claim p99 of the last window (``--hold-every`` seconds)
<= 2x that of the first; after each hold ends, the backlog back to what it was before the
hold (at most its 99th percentile of the minute before, or half a second of work) within
30 s; and jobqueue no worse than PgQueuer on each. ``--plot`` (default ``bench/soak.png``)
draws the run. Run from the repository root::

    .venv-bench/bin/python bench/soak.py                   # 30 min each, about 65 min
    .venv-bench/bin/python bench/soak.py --smoke --systems jobqueue
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import socket
import sys
import tempfile
import time
import typing
import uuid

import _common
import versus
import versus_workers
import worker
from jobqueue import db, maintenance, migrations, types
from jobqueue import queue as queue_module
from jobqueue import worker as jobqueue_worker

BENCH_DIR: typing.Final = pathlib.Path(__file__).resolve().parent
JQ_TYPE: typing.Final = "bench.soak"
PGQ_ENTRYPOINT: typing.Final = "soak"
TICK_SECONDS: typing.Final = 0.1
PROBE_SECONDS: typing.Final = 0.1
SAMPLE_SECONDS: typing.Final = 10.0
BACKLOG_SECONDS: typing.Final = 1.0
PRUNE_SECONDS: typing.Final = 5.0
PRUNE_BATCH: typing.Final = 5_000
PROBE_WORKER: typing.Final = "soak-probe"
RECOVERY_GOAL_SECONDS: typing.Final = 30.0
SIZE_GOAL: typing.Final = 1.5
CLAIM_GOAL: typing.Final = 2.0
RECEIVE_BUFFER_BYTES: typing.Final = 8 << 20
SYSTEMS: typing.Final = ("jobqueue", "pgqueuer")

TABLE_STATS: typing.Final = """
SELECT relname, pg_table_size(relid), pg_indexes_size(relid), n_live_tup, n_dead_tup,
       autovacuum_count, vacuum_count
FROM pg_stat_user_tables
ORDER BY relname
"""
PGQ_BACKLOG: typing.Final = "SELECT count(*) FROM pgqueuer WHERE status = 'queued'"
PGQ_LOG_PRUNE: typing.Final = """
DELETE FROM pgqueuer_log
WHERE id = ANY (ARRAY(SELECT id FROM pgqueuer_log
                      WHERE created < now() - make_interval(secs => %(retention)s)
                      LIMIT %(batch)s))
"""
PGQ_DONE: typing.Final = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"

Connection: typing.TypeAlias = _common.Connection


# --- what the two systems do ------------------------------------------------------------


class System(typing.Protocol):
    name: str

    def workers(
        self, folder: pathlib.Path
    ) -> contextlib.AbstractAsyncContextManager[list[worker.WorkerProcess]]: ...

    async def wait_idle(self, workers: list[worker.WorkerProcess]) -> None: ...

    async def enqueue(self, count: int, enqueued_at: float) -> None: ...

    async def probe(self) -> float: ...

    async def backlog(self) -> int: ...

    async def prune(self, retention: float) -> int: ...


@dataclasses.dataclass
class JobQueueSystem:
    args: argparse.Namespace
    url: str
    conn: Connection  # the benchmark's reads
    queue: queue_module.Queue  # enqueue, backlog, prune
    probe_queue: queue_module.Queue  # the probe's own connection
    name: str = "jobqueue"
    claimer: jobqueue_worker.Claimer | None = None  # claims as a worker does

    def workers(
        self, folder: pathlib.Path
    ) -> contextlib.AbstractAsyncContextManager[list[worker.WorkerProcess]]:
        options = ["--concurrency", str(self.args.concurrency)]
        return worker.running_workers(self.url, self.args.processes, options, versus.QUIET, folder)

    async def wait_idle(self, workers: list[worker.WorkerProcess]) -> None:
        await worker.wait_idle(self.conn, workers, listen=True)

    async def enqueue(self, count: int, enqueued_at: float) -> None:
        await self.queue.enqueue_batch([types.NewJob(JQ_TYPE, {"t": enqueued_at})] * count)

    async def probe(self) -> float:
        if self.claimer is None:
            self.claimer = jobqueue_worker.Claimer(
                self.probe_queue,
                PROBE_WORKER,
                queue_name=self.probe_queue.queue,
                types_=None,
                clock=lambda: None,
            )
        started = time.perf_counter()
        jobs = await self.claimer.claim(1)
        claimed = time.perf_counter() - started
        for job in jobs:
            await self.probe_queue.complete_job(job.id, worker_id=PROBE_WORKER)
        return claimed * 1000

    async def backlog(self) -> int:
        return (await self.queue.get_queue_stats())["pending"]

    async def prune(self, retention: float) -> int:
        return await maintenance.prune_finished_jobs(self.queue, retention, batch_size=PRUNE_BATCH)


@dataclasses.dataclass
class PgQueuerSystem:
    args: argparse.Namespace
    url: str
    conn: Connection
    queries: typing.Any  # pgqueuer.Queries on the enqueue connection
    probe_queries: typing.Any  # pgqueuer.Queries on the probe's connection
    entrypoints: dict[str, typing.Any]
    name: str = "pgqueuer"

    def workers(
        self, folder: pathlib.Path
    ) -> contextlib.AbstractAsyncContextManager[list[worker.WorkerProcess]]:
        return versus.running_pgq_workers(
            self.url, self.args.processes, self.args.batch_size, folder
        )

    async def wait_idle(self, workers: list[worker.WorkerProcess]) -> None:
        await versus.wait_pgq_idle(self.conn, workers)

    async def enqueue(self, count: int, enqueued_at: float) -> None:
        payload = repr(enqueued_at).encode()
        await self.queries.enqueue([PGQ_ENTRYPOINT] * count, [payload] * count, [0] * count)

    async def probe(self) -> float:
        started = time.perf_counter()
        jobs = await self.probe_queries.dequeue(
            batch_size=1,
            entrypoints=self.entrypoints,
            queue_manager_id=uuid.uuid4(),
            global_concurrency_limit=None,
            heartbeat_timeout=datetime.timedelta(seconds=30),
        )
        claimed = time.perf_counter() - started
        if jobs:
            await self.probe_queries.log_jobs([(job, "successful", None) for job in jobs])
        return claimed * 1000

    async def backlog(self) -> int:
        return await _common.count(self.conn, PGQ_BACKLOG)

    async def prune(self, retention: float) -> int:
        deleted = 0
        while True:
            cursor = await self.conn.execute(
                PGQ_LOG_PRUNE, {"retention": retention, "batch": PRUNE_BATCH}
            )
            deleted += max(cursor.rowcount, 0)
            if cursor.rowcount < PRUNE_BATCH:
                return deleted


# --- what is recorded -------------------------------------------------------------------


class _Starts(asyncio.DatagramProtocol):
    """The handlers' datagrams: ``<enqueued at> <started at>``, monotonic seconds."""

    def __init__(self) -> None:
        self.pickups_ms: list[float] = []
        self.started = 0

    def datagram_received(self, data: bytes, addr: tuple[str | typing.Any, int]) -> None:
        enqueued, started = data.decode().split()
        self.pickups_ms.append((float(started) - float(enqueued)) * 1000)
        self.started += 1


@dataclasses.dataclass
class Sample:
    at: float  # seconds since the soak began
    tables: dict[str, dict[str, int]]
    claim_ms: dict[str, float | None]
    pickup_ms: dict[str, float | None]
    backlog: int
    holding: bool

    @property
    def size_bytes(self) -> int:
        return sum(table["table"] + table["indexes"] for table in self.tables.values())

    @property
    def dead_tuples(self) -> int:
        return sum(table["dead"] for table in self.tables.values())


@dataclasses.dataclass
class Run:
    system: str
    samples: list[Sample] = dataclasses.field(default_factory=list)
    backlog: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    holds: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    claims: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    pickups: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    enqueued: int = 0
    started: int = 0
    pruned: int = 0
    late_ticks: int = 0


def _percentiles(values: collections.abc.Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    return {"p50": _common.percentile(values, 0.5), "p99": _common.percentile(values, 0.99)}


async def table_stats(conn: Connection) -> dict[str, dict[str, int]]:
    cursor = await conn.execute(TABLE_STATS)
    return {
        name: {
            "table": table,
            "indexes": indexes,
            "live": live,
            "dead": dead,
            "autovacuums": autovacuums,
            "vacuums": vacuums,
        }
        for name, table, indexes, live, dead, autovacuums, vacuums in await cursor.fetchall()
    }


# --- the soak ---------------------------------------------------------------------------


async def _every(
    seconds: float, action: collections.abc.Callable[[float], collections.abc.Awaitable[None]]
) -> None:
    """``action(t)`` on a fixed schedule from now (``t``: seconds since the start); a late
    turn is not made up, the next one keeps the schedule."""
    began = time.monotonic()
    turn = 0
    while True:
        turn += 1
        await asyncio.sleep(max(0.0, began + turn * seconds - time.monotonic()))
        await action(time.monotonic() - began)


async def soak(args: argparse.Namespace, system: System, url: str, folder: pathlib.Path) -> Run:
    run = Run(system.name)
    loop = asyncio.get_running_loop()
    transport, starts = await loop.create_datagram_endpoint(_Starts, local_addr=("127.0.0.1", 0))
    transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES
    )
    os.environ[versus_workers.PICKUP_PORT_ENV] = str(transport.get_extra_info("sockname")[1])
    reader = await db.connect(url)
    holder = await db.connect(url)
    try:
        async with reader, holder, system.workers(folder) as workers:
            await system.wait_idle(workers)
            began = time.monotonic()
            holding = asyncio.Event()
            window_claims: list[float] = []

            def now() -> float:
                return time.monotonic() - began

            async def enqueue(_: float) -> None:
                owed = round(now() * args.rate) - run.enqueued
                if owed > 2 * args.rate * TICK_SECONDS:
                    run.late_ticks += 1
                if owed > 0:
                    await system.enqueue(owed, time.monotonic())
                    run.enqueued += owed

            async def probe(_: float) -> None:
                claimed = await system.probe()
                run.claims.append((now(), claimed))
                window_claims.append(claimed)

            async def prune(_: float) -> None:
                run.pruned += await system.prune(args.retention)

            async def backlog(_: float) -> None:
                run.backlog.append((now(), await system.backlog()))

            async def sample(_: float) -> None:
                pickups = starts.pickups_ms[:]
                starts.pickups_ms.clear()
                run.pickups.extend((now(), value) for value in pickups)
                claims = window_claims[:]
                window_claims.clear()
                run.samples.append(
                    Sample(
                        now(),
                        await table_stats(reader),
                        _percentiles(claims),
                        _percentiles(pickups),
                        run.backlog[-1][1] if run.backlog else 0,
                        holding.is_set(),
                    )
                )
                versus.progress(
                    f"{system.name} {now():6.0f}s: {run.samples[-1].size_bytes / 2**20:7.1f} MB,"
                    f" dead {run.samples[-1].dead_tuples:>9,}, backlog"
                    f" {run.samples[-1].backlog:>7,}, claim p99"
                    f" {_ms(run.samples[-1].claim_ms['p99'])}, pickup p99"
                    f" {_ms(run.samples[-1].pickup_ms['p99'])}"
                )

            async def hold(_: float) -> None:
                started = now()
                holding.set()
                try:
                    async with holder.transaction():
                        await holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        await holder.execute(args.analytics_query[system.name])
                        await asyncio.sleep(args.hold_seconds)
                finally:
                    holding.clear()
                    run.holds.append((started, now()))

            tasks = [
                asyncio.create_task(_every(period, action))
                for period, action in (
                    (TICK_SECONDS, enqueue),
                    (PROBE_SECONDS, probe),
                    (PRUNE_SECONDS, prune),
                    (BACKLOG_SECONDS, backlog),
                    (SAMPLE_SECONDS, sample),
                    (args.hold_every, hold),
                )
            ]
            try:
                async with asyncio.timeout(args.minutes * 60):
                    while True:
                        worker.check_alive(workers)
                        done = [task for task in tasks if task.done()]
                        for task in done:
                            task.result()  # an action's error ends the run
                        await asyncio.sleep(1.0)
            except TimeoutError:
                pass
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            run.started = starts.started
    finally:
        transport.close()
        del os.environ[versus_workers.PICKUP_PORT_ENV]
    return run


def _ms(value: float | None) -> str:
    return "      -" if value is None else f"{value:7.2f}"


# --- the figures ------------------------------------------------------------------------


def size_at(run: Run, at: float) -> int:
    """The total size of the last sample taken by ``at``."""
    before = [sample for sample in run.samples if sample.at <= at + 1]
    return (before[-1] if before else run.samples[0]).size_bytes


def recoveries(run: Run, rate: float) -> list[dict[str, float | None]]:
    """Per hold: the backlog's peak, the level it must fall back to (its 99th percentile in
    the minute before the hold, or half a second of work if more) and how long after the
    hold ended it got there (None: not by the end of the run)."""
    found = []
    for started, ended in run.holds:
        before = [count for at, count in run.backlog if started - 60 <= at < started]
        level = max(_common.percentile(before, 0.99) if before else 0, rate * 0.5)
        during = [count for at, count in run.backlog if started <= at <= ended]
        after = [(at, count) for at, count in run.backlog if at >= ended]
        back = next((at - ended for at, count in after if count <= level), None)
        found.append(
            {
                "started_s": started,
                "ended_s": ended,
                "peak_backlog": max(during + [count for _, count in after[:60]], default=0),
                "level": level,
                "recovered_after_s": back,
            }
        )
    return found


def summary(args: argparse.Namespace, run: Run) -> dict[str, typing.Any]:
    window = args.hold_every
    end = args.minutes * 60
    first_claims = [ms for at, ms in run.claims if at < window]
    last_claims = [ms for at, ms in run.claims if at >= end - window]
    first_pickups = [ms for at, ms in run.pickups if at < window]
    last_pickups = [ms for at, ms in run.pickups if at >= end - window]
    held = recoveries(run, args.rate)
    size_first = size_at(run, window)
    size_end = run.samples[-1].size_bytes
    worst_recovery = [item["recovered_after_s"] for item in held]
    return {
        "system": run.system,
        "enqueued": run.enqueued,
        "started": run.started,
        "pruned": run.pruned,
        "late_ticks": run.late_ticks,
        "size_first_window_mb": size_first / 2**20,
        "size_end_mb": size_end / 2**20,
        "size_ratio": size_end / size_first if size_first else None,
        "size_max_mb": max(sample.size_bytes for sample in run.samples) / 2**20,
        "dead_max": max(sample.dead_tuples for sample in run.samples),
        "autovacuums": {
            name: table["autovacuums"] for name, table in run.samples[-1].tables.items()
        },
        "claim_first": _percentiles(first_claims),
        "claim_last": _percentiles(last_claims),
        "claim_p99_ratio": _ratio(
            _percentiles(last_claims)["p99"], _percentiles(first_claims)["p99"]
        ),
        "pickup_first": _percentiles(first_pickups),
        "pickup_last": _percentiles(last_pickups),
        "holds": held,
        "recovery_worst_s": (
            None if None in worst_recovery else max(worst_recovery, default=0.0)  # type: ignore[type-var]
        ),
        "backlog_max": max((count for _, count in run.backlog), default=0),
    }


def _recorded(run: Run) -> dict[str, typing.Any]:
    """What the report keeps of a run: its samples, backlog readings and holds, not every
    claim and pickup (millions in a 30-minute run; the samples hold their percentiles)."""
    recorded = dataclasses.asdict(run)
    del recorded["claims"], recorded["pickups"]
    return recorded


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return None if top is None or not bottom else top / bottom


async def run_all(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    load_before = versus.load()
    runs: list[Run] = []
    facts: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="jobqueue-soak-") as folder:
        for name in args.systems:
            versus.progress(f"{name}: {args.minutes:g} min at {args.rate:,} jobs/s")
            runner = soak_jobqueue if name == "jobqueue" else soak_pgqueuer
            run, facts = await runner(args, server_url, pathlib.Path(folder))
            runs.append(run)
    return {
        "runs": [{"summary": summary(args, run), "run": _recorded(run)} for run in runs],
        "facts": facts,
        "load_before": load_before,
        "load_after": versus.load(),
    }


async def soak_jobqueue(
    args: argparse.Namespace, server_url: str, folder: pathlib.Path
) -> tuple[Run, dict[str, str]]:
    async with _common.scratch_database(server_url, "jobqueue_bench_soak_jq") as url:
        conn = await db.connect(url)
        async with (
            conn,
            queue_module.Queue(url) as queue,
            queue_module.Queue(url, pool_max_size=1) as probe_queue,
        ):
            await migrations.migrate(conn)
            facts = await _common.server_settings(conn, versus.SERVER_SETTINGS)
            system = JobQueueSystem(args, url, conn, queue, probe_queue)
            return await soak(args, system, url, folder), facts


async def soak_pgqueuer(
    args: argparse.Namespace, server_url: str, folder: pathlib.Path
) -> tuple[Run, dict[str, str]]:
    pgqueuer = versus.import_optional("pgqueuer")
    asyncpg = versus.import_optional("asyncpg")
    repository = versus.import_optional("pgqueuer.ports.repository")
    async with _common.scratch_database(server_url, "jobqueue_bench_soak_pgq") as url:
        conn = await db.connect(url)
        enqueuer = await asyncpg.connect(dsn=versus.asyncpg_dsn(url))
        prober = await asyncpg.connect(dsn=versus.asyncpg_dsn(url))
        try:
            async with conn:
                queries = pgqueuer.Queries(pgqueuer.AsyncpgDriver(enqueuer))
                await queries.install()
                facts = await _common.server_settings(conn, versus.SERVER_SETTINGS)
                system = PgQueuerSystem(
                    args,
                    url,
                    conn,
                    queries,
                    pgqueuer.Queries(pgqueuer.AsyncpgDriver(prober)),
                    {PGQ_ENTRYPOINT: repository.EntrypointExecutionParameter(0)},
                )
                return await soak(args, system, url, folder), facts
        finally:
            await prober.close()
            await enqueuer.close()


# --- report -----------------------------------------------------------------------------


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pair(summary: dict[str, typing.Any], key: str, stat: str, spec: str) -> str:
    """The first and the last window's ``stat`` of ``key``: ``first / last``."""
    first, last = summary[f"{key}_first"][stat], summary[f"{key}_last"][stat]
    return f"{_cell(first, spec)} / {_cell(last, spec)}"


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    facts = outcome["facts"]
    lines = [
        f"Soak: {args.minutes:g} min per system at {args.rate:,} jobs/s, a REPEATABLE READ"
        f" transaction held {args.hold_seconds:g} s every {args.hold_every:g} s, retention"
        f" {args.retention:g} s; {args.processes} worker processes (jobqueue --concurrency"
        f" {args.concurrency}, PgQueuer --batch-size {args.batch_size}).",
        f"Server: {server}, PostgreSQL {facts.get('server_version')}, fsync"
        f" {facts.get('fsync')}; load {outcome['load_before']} before,"
        f" {outcome['load_after']} after.",
        "",
    ]
    summaries = [entry["summary"] for entry in outcome["runs"]]
    rows: list[tuple[str, collections.abc.Callable[[dict[str, typing.Any]], str], str]] = [
        ("enqueued / started", lambda s: f"{s['enqueued']:,} / {s['started']:,}", ""),
        ("size after the first window, MB", lambda s: _cell(s["size_first_window_mb"], ".1f"), ""),
        ("size at the end, MB", lambda s: _cell(s["size_end_mb"], ".1f"), ""),
        ("size end / first window", lambda s: _cell(s["size_ratio"], ".2f"), f"<= {SIZE_GOAL:g}"),
        ("largest size, MB", lambda s: _cell(s["size_max_mb"], ".1f"), ""),
        ("most dead tuples", lambda s: f"{s['dead_max']:,}", ""),
        ("claim p50 first / last window, ms", lambda s: _pair(s, "claim", "p50", ".2f"), ""),
        ("claim p99 first / last window, ms", lambda s: _pair(s, "claim", "p99", ".2f"), ""),
        (
            "claim p99 last / first",
            lambda s: _cell(s["claim_p99_ratio"], ".2f"),
            f"<= {CLAIM_GOAL:g}",
        ),
        ("enqueue->start p50 first / last, ms", lambda s: _pair(s, "pickup", "p50", ".1f"), ""),
        ("enqueue->start p99 first / last, ms", lambda s: _pair(s, "pickup", "p99", ".1f"), ""),
        ("largest backlog", lambda s: f"{s['backlog_max']:,}", ""),
        (
            "slowest recovery after a hold, s",
            lambda s: _cell(s["recovery_worst_s"], ".0f") if s["holds"] else "no hold",
            f"<= {RECOVERY_GOAL_SECONDS:g}",
        ),
    ]
    width = max(len(label) for label, _, _ in rows)
    names = "  ".join(f"{s['system']:>22}" for s in summaries)
    lines.append(f"{'':{width}}  {names}  goal")
    for label, cell, goal in rows:
        cells = "  ".join(f"{cell(s):>22}" for s in summaries)
        lines.append(f"{label:{width}}  {cells}  {goal}")
    lines.extend(
        f"{s['system']}: hold {held['started_s']:.0f}-{held['ended_s']:.0f} s, backlog peak"
        f" {held['peak_backlog']:,}, back to {held['level']:,.0f} after"
        f" {_cell(held['recovered_after_s'], '.0f')} s"
        for s in summaries
        for held in s["holds"]
    )
    return "\n".join(lines)


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    return json.dumps(
        {"server": server, "args": _arguments(args), **outcome}, indent=2, default=str
    )


def _arguments(args: argparse.Namespace) -> dict[str, typing.Any]:
    return {
        name: value
        for name, value in vars(args).items()
        if isinstance(value, (int, float, str, list))
    }


def plot(args: argparse.Namespace, outcome: dict[str, typing.Any], path: pathlib.Path) -> None:
    matplotlib = versus.import_optional("matplotlib")
    matplotlib.use("Agg")
    pyplot = versus.import_optional("matplotlib.pyplot")
    figure, axes = pyplot.subplots(4, 1, figsize=(10, 11), sharex=True)
    colours = {"jobqueue": "tab:blue", "pgqueuer": "tab:orange"}
    for entry in outcome["runs"]:
        run = entry["run"]
        name = run["system"]
        samples = run["samples"]
        minutes = [sample["at"] / 60 for sample in samples]
        sizes = [
            sum(t["table"] + t["indexes"] for t in sample["tables"].values()) / 2**20
            for sample in samples
        ]
        dead = [sum(t["dead"] for t in sample["tables"].values()) for sample in samples]
        p99 = [sample["claim_ms"]["p99"] for sample in samples]
        p50 = [sample["claim_ms"]["p50"] for sample in samples]
        colour = colours.get(name)
        axes[0].plot(minutes, sizes, label=name, color=colour)
        axes[1].plot(minutes, dead, label=name, color=colour)
        axes[2].plot(minutes, p99, label=f"{name} p99", color=colour)
        axes[2].plot(minutes, p50, label=f"{name} p50", color=colour, linestyle=":")
        axes[3].plot(
            [at / 60 for at, _ in run["backlog"]],
            [count for _, count in run["backlog"]],
            label=name,
            color=colour,
        )
    first = outcome["runs"][0]["run"]
    for started, ended in first["holds"]:
        for axis in axes:
            axis.axvspan(started / 60, ended / 60, color="grey", alpha=0.15)
    axes[0].set_ylabel("tables + indexes, MB")
    axes[1].set_ylabel("dead tuples")
    axes[2].set_ylabel("claim, ms (10 s)")
    axes[2].set_yscale("log")
    axes[3].set_ylabel("backlog, jobs")
    axes[3].set_xlabel("minutes (grey: a REPEATABLE READ transaction held open)")
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.legend(loc="upper left", fontsize="small")
    figure.suptitle(
        f"Soak at {args.rate:,} jobs/s, retention {args.retention:g} s"
        f" ({datetime.date.today().isoformat()})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=80)


# --- arguments --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A soak of jobqueue and PgQueuer (see the docstring)."
    )
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--minutes", type=float, default=30.0, help="per system")
    parser.add_argument(
        "--rate", type=_common.int_between(1, 100_000), default=2_000, help="jobs/s"
    )
    parser.add_argument("--hold-every", type=float, default=300.0, help="seconds between holds")
    parser.add_argument("--hold-seconds", type=float, default=120.0, help="how long each is held")
    parser.add_argument("--retention", type=float, default=60.0, help="finished jobs kept, seconds")
    parser.add_argument("--processes", type=_common.int_between(1, 64), default=2)
    parser.add_argument("--concurrency", type=_common.int_between(1, 10_000), default=100)
    parser.add_argument("--batch-size", type=_common.int_between(1, 10_000), default=500)
    parser.add_argument("--smoke", action="store_true", help="2 min, a 15 s hold every 40 s")
    parser.add_argument("--plot", type=pathlib.Path, default=BENCH_DIR / "soak.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--save-json", type=pathlib.Path, help="also write the JSON report here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.smoke:
        args.minutes, args.hold_every, args.hold_seconds = 2.0, 40.0, 15.0
    if args.hold_seconds >= args.hold_every:
        parser.error("--hold-seconds must be shorter than --hold-every")
    # The analytics query: a count over the system's main table, in the held snapshot.
    args.analytics_query = {
        "jobqueue": "SELECT count(*) FROM jobs",
        "pgqueuer": "SELECT count(*) FROM pgqueuer",
    }
    return args


def report(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    if not args.no_plot:
        plot(args, outcome, args.plot)
    if args.save_json:
        args.save_json.write_text(report_json(args, server, outcome) + "\n")
    return report_json(args, server, outcome) if args.json else report_table(args, server, outcome)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "pgqueuer" in args.systems:
        versus.import_optional("pgqueuer")
    if not args.no_plot:
        versus.import_optional("matplotlib")
    return _common.main(args, run_all, report, report)


if __name__ == "__main__":
    sys.exit(main())
