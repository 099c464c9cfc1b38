#!/usr/bin/env python3
"""Queue statistics on a big table: ``get_queue_stats()`` with a million finished jobs.

Setup, in a scratch database: ``--rows`` (default 1,000,000) ``done`` jobs over five job
types, inserted by one ``INSERT ... SELECT ... FROM generate_series`` statement (it goes
through the ``jobs_after_insert`` trigger like any other write, and its time is
reported), then ``--pending`` jobs enqueued with ``Queue.enqueue_jobs`` of which
``--running`` are claimed with ``Queue.claim_jobs``, then ``VACUUM (ANALYZE) jobs`` so that
autovacuum does not start in the middle of the timings.

Measured, each over ``--calls`` calls (after three untimed warm-up calls), one at a time:

* ``Queue.get_queue_stats()`` and ``Queue.get_queue_stats_by_type()`` (they sum the
  ``job_counts`` delta rows, never the jobs table);
* for comparison, the naive ``SELECT status, count(*) FROM jobs GROUP BY status`` and
  ``... GROUP BY type, status``, on one plain connection;
* the first ``get_queue_stats()`` after ``--deltas`` un-folded delta rows have piled up:
  every statement that changes jobs appends one row per (queue, type) with the net change
  of each status, so 20,000 jobs claimed and completed one at a time with no worker
  folding them (see ``bench/claim.py``) leave 40,000. That call sums them and then folds
  them together. Repeated ``--delta-repeats`` times, each after adding the rows again
  (rows shaped like a claim's and a completion's, in pairs that cancel out, so the counts
  stay right), together with the call right after it. Running workers fold the rows every
  ~10 s, so this is the worst case of a queue nobody works on.

The server is an embedded PostgreSQL (``pgserver``, started in a temporary folder) unless
``DATABASE_URL`` is set; either way the benchmark creates its own scratch database on it and
drops it at the end. Run from the repository root::

    .venv/bin/python bench/stats.py                 # 1,000,000 done rows, 50 calls each
    .venv/bin/python bench/stats.py --rows 100000 --calls 200 --json
    DATABASE_URL=postgresql://user:pw@host/db .venv/bin/python bench/stats.py
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import json
import statistics
import sys
import time
import typing

import _common
from jobqueue import db, migrations, producer, types
from jobqueue import queue as queue_module

WORKER: typing.Final = "bench-worker"
JOB_TYPES: typing.Final = 5
WARM_UP_CALLS: typing.Final = 3

# Benchmark setup: finished jobs, spread over JOB_TYPES types and the last 30 days.
INSERT_DONE: typing.Final = f"""
INSERT INTO jobs (type, status, payload, result, attempts, run_at, locked_at, created_at,
                  updated_at)
SELECT 'type_' || mod(g, {JOB_TYPES}), 'done', jsonb_build_object('n', g), '{{"ok": true}}',
       1, stamp, stamp, stamp, stamp + interval '1 second'
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT now() - make_interval(secs => g * 2.592)) AS t (stamp)
"""
# Delta rows shaped like real ones, one per (queue, type) and statement: a claim's
# (pending -1, running +1) and a completion's (running -1, done +1), each followed by its
# negation, so they pile up like real ones but cancel out and the counts stay right.
INSERT_DELTAS: typing.Final = f"""
INSERT INTO job_counts (queue, type, pending, running, failed, done)
SELECT 'default', 'type_' || mod((g - 1) / 4, {JOB_TYPES}),
       sign * CASE WHEN completion THEN 0 ELSE -1 END,
       sign * CASE WHEN completion THEN -1 ELSE 1 END,
       0,
       sign * CASE WHEN completion THEN 1 ELSE 0 END
FROM generate_series(1, 2 * (%(rows)s / 2)) AS g,
     LATERAL (SELECT mod(g, 2) * 2 - 1, mod((g - 1) / 2, 2) = 1) AS shape (sign, completion)
"""
SERVER_SETTINGS: typing.Final = (
    "server_version",
    "shared_buffers",
    "work_mem",
    "max_parallel_workers_per_gather",
)
NAIVE_BY_STATUS: typing.Final = "SELECT status, count(*) FROM jobs GROUP BY status"
NAIVE_BY_TYPE: typing.Final = "SELECT type, status, count(*) FROM jobs GROUP BY type, status"

Connection: typing.TypeAlias = _common.Connection


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    name: str
    samples_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        """Nearest-rank 95th percentile: the value 95% of the calls were at or below."""
        return _common.percentile(self.samples_ms, 0.95)

    def as_json(self) -> dict[str, typing.Any]:
        return {
            "name": self.name,
            "calls": len(self.samples_ms),
            "median_ms": self.median,
            "p95_ms": self.p95,
            "min_ms": min(self.samples_ms),
            "max_ms": max(self.samples_ms),
        }


async def server_facts(conn: Connection) -> dict[str, str]:
    facts = await _common.server_settings(conn, SERVER_SETTINGS)
    cursor = await conn.execute("SELECT pg_jit_available()")
    jit = await cursor.fetchone()
    facts["jit_available"] = str(bool(jit and jit[0]))
    return facts


# --- setup ------------------------------------------------------------------------------


async def fill(
    conn: Connection, queue: queue_module.Queue, args: argparse.Namespace
) -> dict[str, float]:
    """The big table; returns the setup steps' durations in seconds."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    await conn.execute(INSERT_DONE, {"rows": args.rows})
    seconds["insert_done_rows"] = time.perf_counter() - started
    new = [types.NewJob(f"type_{number % JOB_TYPES}") for number in range(args.pending)]
    await queue.enqueue_jobs(new)
    claimed = 0
    while claimed < args.running:
        batch = await queue.claim_jobs(WORKER, limit=min(1_000, args.running - claimed))
        if not batch:
            break
        claimed += len(batch)
    started = time.perf_counter()
    await conn.execute("VACUUM (ANALYZE) jobs")
    seconds["vacuum_analyze"] = time.perf_counter() - started
    return seconds


async def naive_counts(conn: Connection) -> types.QueueStats:
    cursor = await conn.execute(NAIVE_BY_STATUS)
    return dict(producer.empty_stats(), **dict(await cursor.fetchall()))


# --- timing -----------------------------------------------------------------------------


async def timed_calls(
    name: str, call: collections.abc.Callable[[], collections.abc.Awaitable[object]], calls: int
) -> Timing:
    for _ in range(WARM_UP_CALLS):
        await call()
    samples: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return Timing(name, samples)


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    async with _common.scratch_database(server_url, "jobqueue_bench_stats") as url:
        conn = await db.connect(url)
        async with conn, queue_module.Queue(url) as queue:
            await migrations.migrate(conn)
            facts = await server_facts(conn)
            setup = await fill(conn, queue, args)
            stats = await queue.get_queue_stats()
            counted = await naive_counts(conn)
            if stats != counted:
                raise RuntimeError(f"get_queue_stats() = {stats}, but the table holds {counted}")

            async def by_status() -> object:
                cursor = await conn.execute(NAIVE_BY_STATUS)
                return await cursor.fetchall()

            async def by_type() -> object:
                cursor = await conn.execute(NAIVE_BY_TYPE)
                return await cursor.fetchall()

            timings = [
                await timed_calls("Queue.get_queue_stats()", queue.get_queue_stats, args.calls),
                await timed_calls(
                    "Queue.get_queue_stats_by_type()", queue.get_queue_stats_by_type, args.calls
                ),
                await timed_calls("naive GROUP BY status", by_status, args.calls),
                await timed_calls("naive GROUP BY type, status", by_type, args.calls),
            ]

            first, after = [], []
            for _ in range(args.delta_repeats):
                await conn.execute(INSERT_DELTAS, {"rows": args.deltas})
                await conn.execute("ANALYZE job_counts")
                started = time.perf_counter()
                await queue.get_queue_stats()
                first.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await queue.get_queue_stats()
                after.append((time.perf_counter() - started) * 1000)
            if args.delta_repeats:
                timings += [
                    Timing(f"get_queue_stats() over {args.deltas:,} deltas, folds", first),
                    Timing("get_queue_stats() right after", after),
                ]
            left = await _common.count(conn, "SELECT count(*) FROM job_counts")
            final = await queue.get_queue_stats()
            if final != await naive_counts(conn):
                raise RuntimeError(f"after the delta runs get_queue_stats() = {final} is wrong")
    return {"facts": facts, "setup": setup, "stats": stats, "timings": timings, "left": left}


# --- output -----------------------------------------------------------------------------


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    return json.dumps(
        {
            "benchmark": "stats",
            "server": server,
            **outcome["facts"],
            "rows": args.rows,
            "stats": outcome["stats"],
            "setup_seconds": outcome["setup"],
            "job_counts_rows_at_end": outcome["left"],
            "timings": [timing.as_json() for timing in outcome["timings"]],
        },
        indent=2,
    )


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    facts: dict[str, str] = outcome["facts"]
    setup: dict[str, float] = outcome["setup"]
    lines = [
        f"queue statistics over {args.rows:,} done jobs: {outcome['stats']}",
        f"server: {server}, PostgreSQL {facts['server_version']},"
        f" shared_buffers={facts['shared_buffers']}, work_mem={facts['work_mem']},"
        f" max_parallel_workers_per_gather={facts['max_parallel_workers_per_gather']},"
        f" jit available={facts['jit_available']}",
        f"setup: INSERT of {args.rows:,} done rows (through the jobs_after_insert trigger)"
        f" {setup['insert_done_rows']:.1f} s, VACUUM (ANALYZE) {setup['vacuum_analyze']:.1f} s",
        "",
        f"{'measurement':<48} {'calls':>5} {'median ms':>10} {'p95 ms':>9} {'max ms':>9}",
        "-" * 85,
    ]
    timings: list[Timing] = outcome["timings"]
    lines.extend(
        f"{timing.name:<48} {len(timing.samples_ms):>5} {timing.median:>10.2f}"
        f" {timing.p95:>9.2f} {max(timing.samples_ms):>9.2f}"
        for timing in timings
    )
    queue_median, naive_median = timings[0].median, timings[2].median
    lines += [
        "",
        f"naive GROUP BY status / get_queue_stats(), medians: {naive_median / queue_median:,.0f} x",
        f"job_counts rows at the end: {outcome['left']:,}",
    ]
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="get_queue_stats() time on a big jobs table (see the module docstring)."
    )
    parser.add_argument(
        "--rows", type=_common.int_between(0, 100_000_000), default=1_000_000, help="done rows"
    )
    parser.add_argument(
        "--pending", type=_common.int_between(0, 100_000), default=300, help="jobs enqueued"
    )
    parser.add_argument(
        "--running", type=_common.int_between(0, 100_000), default=100, help="of those, claimed"
    )
    parser.add_argument(
        "--calls", type=_common.int_between(1, 100_000), default=50, help="timed calls each"
    )
    parser.add_argument(
        "--deltas",
        type=_common.int_between(2, 10_000_000),
        default=40_000,
        help="un-folded job_counts rows before the 'first call' measurement",
    )
    parser.add_argument(
        "--delta-repeats",
        type=_common.int_between(0, 1_000),
        default=5,
        help="how often to pile up --deltas rows and time the call that folds them",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return _common.main(parse_args(argv), run, report_json, report_table)


if __name__ == "__main__":
    sys.exit(main())
