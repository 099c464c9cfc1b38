#!/usr/bin/env python3
"""Real worker processes: throughput on no-op jobs, and pickup latency.

Every worker is a real process, ``jobqueue worker --worker-id bench-N ...`` (the script
next to ``sys.executable``), with ``DATABASE_URL`` set to a scratch database and the
built-in ``jobqueue.noop`` handler. A worker counts as up once it is idle: its pool has run the
"when is the next job due" query that follows an empty claim, and (with LISTEN) its
listen connection has run ``LISTEN``; the benchmark sees both in ``pg_stat_activity``,
where ``PGAPPNAME=bench-N`` names the worker's connections. So process start-up (imports,
connecting) is never timed, whatever the worker logs.

Throughput, for each run ``P x C`` (default 1x1, 1x8, 1x32 and 2x32) and each log mode:
start P workers at ``--concurrency C`` (LISTEN on, not ``--burst``), wait until they are
idle, then enqueue ``--jobs`` (20,000) no-op jobs with ONE ``Queue.enqueue_jobs`` inside
a transaction. The clock starts just before that transaction commits (the jobs become
visible, and the NOTIFY goes out, at the commit) and stops when ``get_queue_stats()``,
polled every 20 ms, says every job is done. The workers are then stopped with SIGTERM and
``SELECT count(*)`` checks that every job is ``done``. Also reported: CPU time the worker
processes used for the run, and (embedded server only) the CPU time of the server
processes serving their connections, and "other": the share of the machine that other
programs used meanwhile (busy time from ``/proc/stat`` less the workers, every server
process and the benchmark itself). On a shared machine that is what to look at first: a
run marked ``!`` (over 10%) was disturbed and its figures mean little.

Log modes (``--logs``): ``warning`` runs the workers with ``--log-level warning`` (only
problems are logged), ``info`` with the default, which logs four lines per job, and
``devnull`` with the default but output to /dev/null. Output other than /dev/null goes to
one file per worker, which is scanned afterwards for warnings, errors and tracebacks
(reported in the last column). Default: all three, or ``info`` and ``devnull`` when this
version of ``jobqueue worker`` has no ``--log-level`` (then says so).

Pickup latency: one idle worker at ``--concurrency 8``, first with LISTEN and the default
poll interval of 5,000 ms, then with ``--no-listen --poll-interval 0.1`` (polling alone;
such workers also use no prepared statements). ``--latency-jobs`` (200) jobs are enqueued
one at a time with ``Queue.enqueue_job``, each after the previous one is done and a
random pause (10-30 ms with LISTEN; 10 ms to 10 ms + the poll interval without, so that
jobs arrive at every point of the poll cycle). Latency = ``locked_at - created_at`` of
the job's row, both from the server's clock: from the start of the enqueue's transaction
to the start of the claim that took the job, so a slow commit of the enqueue counts too
(``enq max``, the longest ``enqueue_job`` call, tells such outliers apart). Completing a
job clears ``locked_at``, so a trigger the benchmark adds to its scratch database (after
the throughput runs, which it would slow down) copies it into ``bench_pickups`` at the
claim and sends ``bench_done`` at completion, which is what the benchmark waits for: no
polling. Also reported: enqueue to done (``updated_at - created_at``), and the CPU the
idle worker used over ``--idle-seconds`` before the first job (what polling costs).

The server is an embedded PostgreSQL (``pgserver``, in a temporary folder) unless
``DATABASE_URL`` is set; either way the benchmark creates its own scratch database on it
and drops it at the end. Every worker process started is stopped at the end (SIGTERM,
then SIGKILL after 15 s), also on errors, Ctrl-C and SIGTERM. Run from the repository
root::

    .venv/bin/python bench/worker.py                      # about 2 minutes on 2 cores
    .venv/bin/python bench/worker.py --jobs 5000 --logs warning --latency-jobs 50 --json
    .venv/bin/python bench/worker.py --processes 1 2 --concurrency 16 --latency-jobs 0
    DATABASE_URL=postgresql://user:pw@host/db .venv/bin/python bench/worker.py
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import contextlib
import dataclasses
import itertools
import json
import os
import pathlib
import random
import re
import subprocess
import sys
import tempfile
import time
import typing

import _common
from jobqueue import db, migrations, types
from jobqueue import queue as queue_module

JOBQUEUE: typing.Final = pathlib.Path(sys.executable).with_name("jobqueue")
JOB_TYPE: typing.Final = "jobqueue.noop"
LOG_MODES: typing.Final = ("warning", "info", "devnull")
DEFAULT_RUNS: typing.Final = ((1, 1), (1, 8), (1, 32), (2, 32))
STATS_POLL_SECONDS: typing.Final = 0.02
START_TIMEOUT_SECONDS: typing.Final = 60.0
STOP_TIMEOUT_SECONDS: typing.Final = 15.0
JOB_TIMEOUT_SECONDS: typing.Final = 30.0
LATENCY_CONCURRENCY: typing.Final = 8
LISTEN_POLL_MS: typing.Final = 5000.0
NO_LISTEN_POLL_MS: typing.Final = 100.0
PAUSE_MS: typing.Final = 10.0
PAUSE_SPREAD_LISTEN_MS: typing.Final = 20.0
PROBLEM_EXAMPLES: typing.Final = 3
# Above this share of the machine used by other programs, a run's figures are flagged.
DISTURBED_SHARE: typing.Final = 0.10
# The worker's idle step after an empty claim (query job_next_run_at), as pg_stat_activity
# shows it.
IDLE_QUERY_PATTERN: typing.Final = "%min(run_at)%"
SERVER_SETTINGS: typing.Final = ("server_version", "fsync", "synchronous_commit", "max_connections")

# Bench-only, in the scratch database, installed after the throughput runs (it costs a row
# insert per claim and a NOTIFY per completion): locked_at survives completion here, and a
# completion wakes the benchmark.
PICKUP_TRIGGER: typing.Final = """
CREATE TABLE bench_pickups (id uuid PRIMARY KEY, created_at timestamptz, locked_at timestamptz);
CREATE FUNCTION bench_record_pickup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'running' THEN
        INSERT INTO bench_pickups VALUES (NEW.id, NEW.created_at, NEW.locked_at);
    ELSIF NEW.status = 'done' THEN
        PERFORM pg_notify('bench_done', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER bench_pickup AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION bench_record_pickup();
"""
PICKUP_LATENCIES: typing.Final = """
SELECT p.id::text,
       extract(epoch FROM p.locked_at - p.created_at) * 1000,
       extract(epoch FROM j.updated_at - j.created_at) * 1000
FROM bench_pickups AS p JOIN jobs AS j USING (id)
WHERE j.status = 'done'
"""
IDLE_WORKERS: typing.Final = """
SELECT application_name
FROM pg_stat_activity
WHERE datname = current_database()
  AND ((application_name = ANY(%(workers)s::text[]) AND query LIKE %(idle)s)
       OR (application_name = ANY(%(listeners)s::text[]) AND query <> ''))
"""
# Every process of the server (background ones too), and whether it serves a worker.
SERVER_PIDS: typing.Final = """
SELECT pid, datname = current_database()
            AND application_name = ANY(%(workers)s::text[] || %(listeners)s::text[])
FROM pg_stat_activity
"""
# "2026-11-29 20:01:02,345 WARNING message": the level of a text log line.
LOG_LEVEL_FIELD: typing.Final = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) ")

Connection: typing.TypeAlias = _common.Connection


# --- worker processes -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LogMode:
    name: str
    options: tuple[str, ...]
    to_file: bool


def log_mode(name: str) -> LogMode:
    if name == "warning":
        return LogMode(name, ("--log-level", "warning"), to_file=True)
    return LogMode(name, (), to_file=name == "info")


@dataclasses.dataclass(slots=True)
class WorkerProcess:
    worker_id: str
    process: asyncio.subprocess.Process
    log_path: pathlib.Path | None

    @property
    def listen_name(self) -> str:
        """The application_name of the worker's LISTEN connection (see worker._listen)."""
        return f"jobqueue-listen {self.worker_id}"[:63]


_worker_numbers = itertools.count(1)


def _log_target(path: pathlib.Path | None) -> typing.IO[bytes] | int:
    return subprocess.DEVNULL if path is None else path.open("wb")


async def start_worker(
    url: str, options: collections.abc.Sequence[str], mode: LogMode, folder: pathlib.Path
) -> WorkerProcess:
    """``jobqueue worker --worker-id bench-N <options>``, in a session of its own (so that
    a Ctrl-C reaches only the benchmark, which stops its workers itself)."""
    worker_id = f"bench-{next(_worker_numbers)}"
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("JOBQUEUE_")
    }
    environment |= {db.DATABASE_URL_ENV: url, "PGAPPNAME": worker_id}
    log_path = folder / f"{worker_id}.log" if mode.to_file else None
    target = _log_target(log_path)
    try:
        process = await asyncio.create_subprocess_exec(
            str(JOBQUEUE),
            "worker",
            "--worker-id",
            worker_id,
            *options,
            *mode.options,
            stdin=subprocess.DEVNULL,
            stdout=target,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    finally:
        if not isinstance(target, int):
            target.close()
    return WorkerProcess(worker_id, process, log_path)


async def stop_workers(workers: collections.abc.Sequence[WorkerProcess]) -> None:
    """SIGTERM to every worker still running, then SIGKILL to any that has not exited
    after STOP_TIMEOUT_SECONDS (or when this wait is itself interrupted)."""
    alive = [worker.process for worker in workers if worker.process.returncode is None]
    for process in alive:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    try:
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
            for process in alive:
                await process.wait()
    except TimeoutError:
        pass
    finally:
        for process in alive:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await process.wait()


@contextlib.asynccontextmanager
async def running_workers(
    url: str,
    count: int,
    options: collections.abc.Sequence[str],
    mode: LogMode,
    folder: pathlib.Path,
) -> collections.abc.AsyncIterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    try:
        for _ in range(count):  # one at a time: those started are stopped if one fails
            started = await start_worker(url, options, mode, folder)
            workers.append(started)
        yield workers
    finally:
        await stop_workers(workers)


def check_alive(workers: collections.abc.Sequence[WorkerProcess]) -> None:
    for worker in workers:
        if worker.process.returncode is not None:
            raise RuntimeError(
                f"worker {worker.worker_id} exited with {worker.process.returncode}"
                + log_tail(worker)
            )


def log_tail(worker: WorkerProcess, lines: int = 20) -> str:
    if worker.log_path is None:
        return " (its output went to /dev/null)"
    text = worker.log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"; the end of {worker.log_path}:\n" + "\n".join(text)


async def wait_idle(
    conn: Connection, workers: collections.abc.Sequence[WorkerProcess], *, listen: bool
) -> None:
    """Until every worker has made an empty claim and (``listen``) is listening."""
    expected = {worker.worker_id for worker in workers}
    if listen:
        expected |= {worker.listen_name for worker in workers}
    seen: set[str] = set()
    params = {
        "workers": [worker.worker_id for worker in workers],
        "listeners": [worker.listen_name for worker in workers] if listen else [],
        "idle": IDLE_QUERY_PATTERN,
    }
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while seen != expected:
        check_alive(workers)
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not idle after {START_TIMEOUT_SECONDS:g}s: {seen}")
        cursor = await conn.execute(IDLE_WORKERS, params)
        seen |= {row[0] for row in await cursor.fetchall()}
        await asyncio.sleep(0.05)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a local process so far (Linux ``/proc``), else None."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU time the whole machine has spent busy, all CPUs together (Linux ``/proc``)."""
    try:
        fields = pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_times(pids: collections.abc.Iterable[int]) -> dict[int, float]:
    """``{pid: cpu_seconds}`` of those that still exist."""
    times = {pid: cpu_seconds(pid) for pid in pids}
    return {pid: value for pid, value in times.items() if value is not None}


def spent(start: dict[int, float], end: dict[int, float]) -> float:
    """CPU time used between two readings; processes started meanwhile count from zero."""
    return sum(value - start.get(pid, 0.0) for pid, value in end.items())


@dataclasses.dataclass(slots=True)
class CpuMeter:
    """CPU time between ``start()`` and ``stop()``: of the workers; of the server processes
    serving their connections (a server on this machine only); and ``other_share``, the
    share of the machine used by anything else (other programs disturbing the figures):
    machine busy time less the workers, every server process and this benchmark."""

    workers: collections.abc.Sequence[WorkerProcess]
    local_server: bool
    worker_seconds: float | None = None
    server_seconds: float | None = None
    other_share: float | None = None
    _start: dict[str, typing.Any] = dataclasses.field(default_factory=dict)

    async def _reading(self, conn: Connection) -> dict[str, typing.Any]:
        reading: dict[str, typing.Any] = {
            "workers": cpu_times(worker.process.pid for worker in self.workers),
            "wall": time.monotonic(),
            "self": time.process_time(),
            "machine": machine_busy_seconds(),
        }
        if self.local_server:
            params = {
                "workers": [worker.worker_id for worker in self.workers],
                "listeners": [worker.listen_name for worker in self.workers],
            }
            cursor = await conn.execute(SERVER_PIDS, params)
            rows = await cursor.fetchall()
            reading["serving"] = cpu_times(int(pid) for pid, serving in rows if serving)
            reading["server"] = cpu_times(int(pid) for pid, _ in rows)
        return reading

    async def start(self, conn: Connection) -> None:
        self._start = await self._reading(conn)

    async def stop(self, conn: Connection) -> None:
        start, end = self._start, await self._reading(conn)
        if len(end["workers"]) == len(self.workers):
            self.worker_seconds = spent(start["workers"], end["workers"])
        if not self.local_server:
            return
        self.server_seconds = spent(start["serving"], end["serving"])
        if start["machine"] is None or end["machine"] is None or self.worker_seconds is None:
            return
        mine = self.worker_seconds + spent(start["server"], end["server"])
        mine += end["self"] - start["self"]
        other = end["machine"] - start["machine"] - mine
        capacity = (end["wall"] - start["wall"]) * (os.cpu_count() or 1)
        self.other_share = max(0.0, other) / capacity if capacity > 0 else None


def log_problems(workers: collections.abc.Sequence[WorkerProcess]) -> list[str] | None:
    """Warning, error and traceback lines of the workers' logs (``None``: the output went
    to /dev/null)."""
    if any(worker.log_path is None for worker in workers):
        return None
    problems: list[str] = []
    for worker in workers:
        assert worker.log_path is not None
        for line in worker.log_path.read_text(errors="replace").splitlines():
            match = LOG_LEVEL_FIELD.match(line)
            level = match["level"] if match else ""
            if level in ("WARNING", "ERROR", "CRITICAL") or line.startswith("Traceback"):
                problems.append(f"{worker.worker_id}: {line}")
    return problems


def problem_summary(problems: list[str] | None, exit_codes: list[int | None]) -> str:
    """The last column: worker log problems, and exit codes other than 0 after SIGTERM."""
    text = "not logged" if problems is None else f"{len(problems)} lines" if problems else "none"
    bad = [code for code in exit_codes if code != 0]
    return text + (f"; exit codes {bad}" if bad else "")


# --- throughput -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Throughput:
    processes: int
    concurrency: int
    logs: str
    jobs: int
    seconds: float
    enqueue_seconds: float
    worker_cpu_seconds: float | None
    server_cpu_seconds: float | None
    other_share: float | None
    exit_codes: list[int | None]
    log_problems: list[str] | None

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")

    def cpu_us_per_job(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds / self.jobs * 1e6

    def as_json(self) -> dict[str, typing.Any]:
        return {
            **dataclasses.asdict(self),
            "jobs_per_second": round(self.jobs_per_second, 1),
            "worker_cpu_us_per_job": self.cpu_us_per_job(self.worker_cpu_seconds),
            "server_cpu_us_per_job": self.cpu_us_per_job(self.server_cpu_seconds),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Setup:
    url: str
    conn: Connection
    queue: queue_module.Queue
    folder: pathlib.Path
    local_server: bool


async def wait_all_done(
    setup: Setup, jobs: int, workers: collections.abc.Sequence[WorkerProcess]
) -> None:
    deadline = time.monotonic() + max(120.0, jobs / 100)
    while True:
        stats = await setup.queue.get_queue_stats()
        if stats["done"] + stats["failed"] >= jobs:
            return
        check_alive(workers)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {jobs:,} jobs done in time: {stats}")
        await asyncio.sleep(STATS_POLL_SECONDS)


async def throughput(
    setup: Setup, processes: int, concurrency: int, mode: LogMode, jobs: int
) -> Throughput:
    await setup.conn.execute("TRUNCATE jobs")
    options = ["--concurrency", str(concurrency)]
    async with running_workers(setup.url, processes, options, mode, setup.folder) as workers:
        await wait_idle(setup.conn, workers, listen=True)
        meter = CpuMeter(workers, setup.local_server)
        await meter.start(setup.conn)
        new = [types.NewJob(JOB_TYPE)] * jobs
        async with setup.queue.pool.connection() as conn:
            enqueue_started = time.perf_counter()
            async with conn.transaction():
                await setup.queue.enqueue_jobs(new, conn=conn)
                started = time.perf_counter()  # the commit makes them visible, and notifies
        await wait_all_done(setup, jobs, workers)
        seconds = time.perf_counter() - started
        await meter.stop(setup.conn)
    done = await _common.count(setup.conn, "SELECT count(*) FROM jobs WHERE status = 'done'")
    if done != jobs:
        stats = await setup.queue.get_queue_stats()
        raise RuntimeError(f"{done:,} of {jobs:,} jobs done; get_queue_stats() = {stats}")
    return Throughput(
        processes,
        concurrency,
        mode.name,
        jobs,
        seconds,
        started - enqueue_started,
        meter.worker_seconds,
        meter.server_seconds,
        meter.other_share,
        [worker.process.returncode for worker in workers],
        log_problems(workers),
    )


# --- pickup latency ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Latency:
    name: str
    listen: bool
    poll_interval_ms: float
    logs: str
    pickup_ms: list[float]
    done_ms: list[float]
    enqueue_ms: list[float]
    idle_seconds: float
    idle_cpu_seconds: float | None
    idle_server_cpu_seconds: float | None
    other_share: float | None
    exit_codes: list[int | None]
    log_problems: list[str] | None

    def pickup(self, fraction: float) -> float:
        return _common.percentile(self.pickup_ms, fraction)

    def idle_percent(self, cpu_seconds: float | None) -> float | None:
        return None if cpu_seconds is None else 100 * cpu_seconds / self.idle_seconds

    def as_json(self) -> dict[str, typing.Any]:
        fields = dataclasses.asdict(self)
        del fields["pickup_ms"], fields["done_ms"], fields["enqueue_ms"]
        return {
            **fields,
            "jobs": len(self.pickup_ms),
            "pickup_ms": {
                "p50": self.pickup(0.5),
                "p90": self.pickup(0.9),
                "p99": self.pickup(0.99),
                "max": max(self.pickup_ms),
            },
            "done_ms": {
                "p50": _common.percentile(self.done_ms, 0.5),
                "p99": _common.percentile(self.done_ms, 0.99),
            },
            "enqueue_call_ms": {
                "p50": _common.percentile(self.enqueue_ms, 0.5),
                "max": max(self.enqueue_ms),
            },
            "idle_cpu_percent": self.idle_percent(self.idle_cpu_seconds),
            "idle_server_cpu_percent": self.idle_percent(self.idle_server_cpu_seconds),
        }


async def install_pickup_trigger(conn: Connection) -> None:
    await conn.execute(PICKUP_TRIGGER)


async def wait_done(listener: Connection, job_id: str) -> None:
    async for notice in listener.notifies(timeout=JOB_TIMEOUT_SECONDS):
        if notice.payload == job_id:
            return
    raise RuntimeError(f"job {job_id} was not done within {JOB_TIMEOUT_SECONDS:g}s")


async def latency(
    setup: Setup, *, listen: bool, poll_ms: float, mode: LogMode, jobs: int, idle_seconds: float
) -> Latency:
    await setup.conn.execute("TRUNCATE jobs, bench_pickups")
    options = [
        "--concurrency",
        str(LATENCY_CONCURRENCY),
        "--poll-interval",
        f"{poll_ms:g}ms",
        *([] if listen else ["--no-listen"]),
    ]
    spread = PAUSE_SPREAD_LISTEN_MS if listen else poll_ms
    listener = await db.connect(setup.url)
    async with listener, running_workers(setup.url, 1, options, mode, setup.folder) as workers:
        await listener.execute("LISTEN bench_done")
        await wait_idle(setup.conn, workers, listen=listen)
        meter = CpuMeter(workers, setup.local_server)
        await meter.start(setup.conn)
        await asyncio.sleep(idle_seconds)
        await meter.stop(setup.conn)
        jobs_meter = CpuMeter(workers, setup.local_server)
        await jobs_meter.start(setup.conn)
        enqueue_ms: dict[str, float] = {}
        for _ in range(jobs):
            check_alive(workers)
            called = time.perf_counter()
            job = await setup.queue.enqueue_job(JOB_TYPE)
            enqueue_ms[str(job.id)] = (time.perf_counter() - called) * 1000
            await wait_done(listener, str(job.id))
            await asyncio.sleep((PAUSE_MS + random.uniform(0, spread)) / 1000)
        await jobs_meter.stop(setup.conn)
    cursor = await setup.conn.execute(PICKUP_LATENCIES)
    rows = await cursor.fetchall()
    if len(rows) != jobs:
        raise RuntimeError(f"{len(rows)} pickups recorded for {jobs} jobs")
    name = "LISTEN/NOTIFY" if listen else "poll only (--no-listen)"
    return Latency(
        name,
        listen,
        poll_ms,
        mode.name,
        [float(row[1]) for row in rows],
        [float(row[2]) for row in rows],
        [enqueue_ms[row[0]] for row in rows],
        idle_seconds,
        meter.worker_seconds,
        meter.server_seconds,
        jobs_meter.other_share,
        [worker.process.returncode for worker in workers],
        log_problems(workers),
    )


# --- the benchmark ----------------------------------------------------------------------


async def supports_log_level() -> bool:
    """Whether this version of ``jobqueue worker`` takes ``--log-level``."""
    process = await asyncio.create_subprocess_exec(
        str(JOBQUEUE),
        "worker",
        "--help",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    output, _ = await process.communicate()
    return b"--log-level" in output


async def log_modes(requested: list[str] | None) -> tuple[list[LogMode], str | None]:
    """The log modes to run, and a note when the default had to change."""
    has_level = await supports_log_level()
    if requested is None:
        if has_level:
            return [log_mode(name) for name in LOG_MODES], None
        note = "jobqueue worker has no --log-level: measured with default logging only"
        return [log_mode("info"), log_mode("devnull")], note
    if "warning" in requested and not has_level:
        raise SystemExit("bench/worker.py: this jobqueue worker has no --log-level option")
    return [log_mode(name) for name in requested], None


def runs(args: argparse.Namespace) -> list[tuple[int, int]]:
    if args.processes is None and args.concurrency is None:
        return list(DEFAULT_RUNS)
    return list(itertools.product(args.processes or [1], args.concurrency or [1, 8, 32]))


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    modes, note = await log_modes(args.logs)
    async with _common.scratch_database(server_url, "jobqueue_bench_worker") as url:
        conn = await db.connect(url)
        async with conn, queue_module.Queue(url, pool_max_size=2) as queue:
            await migrations.migrate(conn)
            facts = await _common.server_settings(conn, SERVER_SETTINGS)
            with tempfile.TemporaryDirectory(prefix="jobqueue-bench-") as folder:
                setup = Setup(url, conn, queue, pathlib.Path(folder), args.local_server)
                results: list[Throughput] = []
                if args.jobs:
                    for mode in modes:
                        for processes, concurrency in runs(args):
                            results.append(
                                await throughput(setup, processes, concurrency, mode, args.jobs)
                            )
                latencies: list[Latency] = []
                if args.latency_jobs:
                    await install_pickup_trigger(conn)
                    for listen, poll_ms in ((True, LISTEN_POLL_MS), (False, NO_LISTEN_POLL_MS)):
                        latencies.append(
                            await latency(
                                setup,
                                listen=listen,
                                poll_ms=poll_ms,
                                mode=modes[0],
                                jobs=args.latency_jobs,
                                idle_seconds=args.idle_seconds,
                            )
                        )
    return {"facts": facts, "throughput": results, "latency": latencies, "note": note}


# --- output -----------------------------------------------------------------------------


def all_problems(outcome: dict[str, typing.Any]) -> list[str]:
    found: list[str] = []
    for result in [*outcome["throughput"], *outcome["latency"]]:
        found += result.log_problems or []
    return found


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    return json.dumps(
        {
            "benchmark": "worker",
            "server": server,
            **outcome["facts"],
            "cpus": os.cpu_count(),
            "note": outcome["note"],
            "throughput": [result.as_json() for result in outcome["throughput"]],
            "latency": [result.as_json() for result in outcome["latency"]],
        },
        indent=2,
    )


def _cell(value: float | None, width: int, spec: str, suffix: str = "") -> str:
    """``value`` formatted with ``spec`` plus ``suffix``, right-aligned; ``-`` if unknown."""
    text = "-" if value is None else format(value, spec) + suffix
    return f"{text:>{width}}"


def _other(share: float | None) -> str:
    """The "other" column: the machine share other programs used; ``!`` marks a disturbed
    run."""
    mark = "!" if share is not None and share > DISTURBED_SHARE else " "
    return _cell(None if share is None else 100 * share, 5, ".0f", "%") + mark


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    facts: dict[str, str] = outcome["facts"]
    lines = [
        f"worker processes on no-op jobs; {os.cpu_count()} CPUs",
        f"server: {server}, PostgreSQL {facts['server_version']}, fsync={facts['fsync']},"
        f" synchronous_commit={facts['synchronous_commit']}",
    ]
    if outcome["note"]:
        lines.append(f"NOTE: {outcome['note']}")
    throughputs: list[Throughput] = outcome["throughput"]
    if throughputs:
        lines += [
            "",
            f"throughput: {args.jobs:,} jobs enqueued at once to idle workers (LISTEN on);"
            " clock from the enqueue's commit to the last job done",
            f"{'procs':>5} {'conc':>4} {'logs':<8} {'seconds':>7} {'jobs/s':>7}"
            f" {'worker CPU':>10} {'db CPU':>7} {'other':>6}  log problems",
            f"{'':>5} {'':>4} {'':<8} {'':>7} {'':>7} {'µs/job':>10} {'µs/job':>7}",
            "-" * 79,
        ]
        lines.extend(
            f"{result.processes:>5} {result.concurrency:>4} {result.logs:<8}"
            f" {result.seconds:>7.2f} {result.jobs_per_second:>7,.0f}"
            f" {_cell(result.cpu_us_per_job(result.worker_cpu_seconds), 10, ',.0f')}"
            f" {_cell(result.cpu_us_per_job(result.server_cpu_seconds), 7, ',.0f')}"
            f" {_other(result.other_share)}"
            f" {problem_summary(result.log_problems, result.exit_codes)}"
            for result in throughputs
        )
        enqueue = sum(result.enqueue_seconds for result in throughputs) / len(throughputs)
        lines.append(
            f"setup: one enqueue_jobs of {args.jobs:,} jobs took {enqueue:.2f} s on average"
            " (not timed); logs: warning = --log-level warning, info = default (4 lines a"
            " job) to a file, devnull = default to /dev/null"
        )
    latencies: list[Latency] = outcome["latency"]
    if latencies:
        lines += [
            "",
            f"pickup latency: one idle worker, concurrency {LATENCY_CONCURRENCY}, jobs enqueued"
            " one at a time; locked_at - created_at (server clock)",
            f"{'mode':<24} {'poll ms':>7} {'jobs':>5} {'p50':>7} {'p90':>7} {'p99':>7}"
            f" {'max':>7} {'enq max':>7} {'done p50':>8} {'idle CPU':>8} {'db':>5} {'other':>6}",
            "-" * 105,
        ]
        lines.extend(
            f"{result.name:<24} {result.poll_interval_ms:>7,.0f} {len(result.pickup_ms):>5}"
            f" {result.pickup(0.5):>7.2f} {result.pickup(0.9):>7.2f}"
            f" {result.pickup(0.99):>7.2f} {max(result.pickup_ms):>7.2f}"
            f" {max(result.enqueue_ms):>7.2f}"
            f" {_common.percentile(result.done_ms, 0.5):>8.2f}"
            f" {_cell(result.idle_percent(result.idle_cpu_seconds), 8, '.1f', '%')}"
            f" {_cell(result.idle_percent(result.idle_server_cpu_seconds), 5, '.1f', '%')}"
            f" {_other(result.other_share)}"
            for result in latencies
        )
        lines.append(
            "(ms; enq max: the longest enqueue_job call, as the benchmark saw it: the pickup"
            " clock starts at the enqueue's start, so a slow commit (an fsync stall) shows in"
            " both; done p50: enqueue to done; idle CPU: the worker process and (db) the server"
            f" processes of its connections over {args.idle_seconds:g} s idle, in 10 ms ticks;"
            f" logs: {latencies[0].logs})"
        )
    shares = [result.other_share for result in throughputs]
    shares += [result.other_share for result in latencies]
    if any(share is not None and share > DISTURBED_SHARE for share in shares):
        lines += [
            "",
            f"! other programs used more than {DISTURBED_SHARE:.0%} of the machine during the"
            " runs marked !: their figures are disturbed; rerun on a quiet machine",
        ]
    problems = all_problems(outcome)
    if problems:
        lines += ["", f"worker log problems ({len(problems)} lines), the first few:"]
        lines += problems[:PROBLEM_EXAMPLES]
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Worker processes: no-op throughput and pickup latency"
        " (see the module docstring)."
    )
    parser.add_argument(
        "--jobs",
        type=_common.int_between(0, 10_000_000),
        default=20_000,
        help="jobs per throughput run; 0 skips throughput",
    )
    parser.add_argument(
        "--processes",
        type=_common.int_between(1, 64),
        nargs="+",
        help="worker processes per run; with --concurrency, runs are every pair"
        " (default runs: 1x1, 1x8, 1x32, 2x32)",
    )
    parser.add_argument(
        "--concurrency",
        type=_common.int_between(1, 10_000),
        nargs="+",
        help="--concurrency of each worker (default with --processes: 1 8 32)",
    )
    parser.add_argument(
        "--logs",
        choices=LOG_MODES,
        nargs="+",
        help="worker log modes to measure throughput in (default: all three)",
    )
    parser.add_argument(
        "--latency-jobs",
        type=_common.int_between(0, 100_000),
        default=200,
        help="jobs per pickup-latency run; 0 skips latency",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="how long to measure an idle worker's CPU before the latency jobs",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    # CPU time of server processes can be read only when they run on this machine.
    args.local_server = not os.environ.get(db.DATABASE_URL_ENV)
    return args


def main(argv: list[str] | None = None) -> int:
    return _common.main(parse_args(argv), run, report_json, report_table)


if __name__ == "__main__":
    sys.exit(main())
