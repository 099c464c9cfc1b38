#!/usr/bin/env python3
"""Claim throughput of ONE process, in jobs per second.

Each measurement starts from a fresh table (``TRUNCATE jobs``), enqueues ``--jobs`` no-op
jobs with ``Queue.enqueue_jobs``, runs ``ANALYZE jobs``, and then times draining them (the
enqueue is not timed):

* ``queue claim+complete``: ``Queue.claim_jobs(worker, limit=B)``, then
  ``Queue.complete_job(id, worker_id=worker)`` for each claimed job (one statement each:
  without follow-up jobs it opens no transaction);
* ``queue claim+complete_jobs`` (batches above 1, when the queue has ``complete_jobs``):
  each claimed batch completed by one ``Queue.complete_jobs`` statement instead;
* ``queue claim only``: ``Queue.claim_jobs`` alone (the jobs stay ``running``);
* ``raw claim`` and ``raw claim+complete``: the same ``job_claim`` (and ``job_complete``)
  statements from ``jobqueue.sql`` on one plain psycopg ``AsyncConnection``: no pool, no
  argument checks, no ``Job`` rows. This is the limit the queue API can reach; the ``vs``
  column is the queue API's share of it, so ``1 - ratio`` is Python overhead;
* ``seed claim``: the seed's claim shape, ``SELECT * FROM jobs WHERE status = 'pending'
  AND run_at <= now() AND locked_at IS NULL FOR UPDATE SKIP LOCKED LIMIT 1`` and then an
  ``UPDATE`` of that row, in one transaction, on one plain connection, over a copy of the
  same jobs in a table built by migration 0001 alone (the seed's schema: primary key only,
  no triggers). Compared with ``raw claim`` it shows what the ready index and batching
  gain. ``--seed-on-current-schema`` also runs it on the current table (ready index, the
  ``jobs_after_*`` triggers).

After each ``queue claim+complete`` drain the script checks that ``get_queue_stats()``
agrees with ``SELECT status, count(*)``, and reports how many ``job_counts`` delta rows the
drain left behind: one per statement that changed jobs (per queue and type). They are
folded together when someone reads the stats, or by a running worker every ~10 s; no
worker runs here.

``--done-rows N`` writes N finished jobs before each measurement's pending ones, as history
in a long-lived table: the seed's claim scans past them (with 100,000 it manages ~140
claims/s, so a whole drain of 20,000 takes minutes), the ready index never sees them.

``--no-count-triggers`` drops the four ``jobs_after_*`` triggers (insert, update, delete,
truncate) in the scratch database first, to show what they cost per statement. Their one
function, ``jobs_record_change()``, records the ``job_counts`` deltas AND sends the
``jobqueue_ready`` NOTIFY, so without them both are off: ``get_queue_stats()`` is wrong
for that database and idle workers would not be woken.

The server is an embedded PostgreSQL (``pgserver``, started in a temporary folder) unless
``DATABASE_URL`` is set; either way the benchmark creates its own scratch database on it and
drops it at the end. Run from the repository root::

    .venv/bin/python bench/claim.py                       # 20,000 jobs, batches 1 and 50
    .venv/bin/python bench/claim.py --jobs 5000 --batch 1 10 100 --json
    .venv/bin/python bench/claim.py --no-count-triggers --no-seed
    DATABASE_URL=postgresql://user:pw@host/db .venv/bin/python bench/claim.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing

import psycopg
import psycopg.sql

import _common
from jobqueue import checks, db, migrations, producer, sql, types
from jobqueue import queue as queue_module

WORKER: typing.Final = "bench-worker"
JOB_TYPE: typing.Final = "jobqueue.noop"
ENQUEUE_CHUNK: typing.Final = 1_000
SEED_SCHEMA: typing.Final = "bench_seed"
# One function, jobs_record_change(), behind all four: job_counts deltas and NOTIFY.
TRIGGERS: typing.Final = (
    "jobs_after_insert",
    "jobs_after_update",
    "jobs_after_delete",
    "jobs_after_truncate",
)
SERVER_SETTINGS: typing.Final = ("server_version", "fsync", "synchronous_commit", "shared_buffers")

# The seed's claim, statement for statement: find one ready row, then take it.
SEED_SELECT: typing.Final = (
    "SELECT * FROM jobs WHERE status = 'pending' AND run_at <= now() AND locked_at IS NULL"
    " FOR UPDATE SKIP LOCKED LIMIT 1"
)
SEED_UPDATE: typing.Final = (
    "UPDATE jobs SET status = 'running', locked_at = now(), locked_by = %(worker_id)s,"
    " attempts = attempts + 1, updated_at = now() WHERE id = %(id)s"
)

# History for --done-rows: finished jobs from the past 30 days, written before the pending
# ones, so they come first in the table as they would in a real one.
INSERT_DONE: typing.Final = """
INSERT INTO jobs (type, status, attempts, run_at, created_at, updated_at)
SELECT 'jobqueue.noop', 'done', 1, stamp, stamp, stamp
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT now() - make_interval(secs => 2592000 - g * 2592000.0 / %(rows)s)) AS t (stamp)
"""

Connection: typing.TypeAlias = _common.Connection


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    name: str
    batch: int
    jobs: int
    seconds: float
    # The measurement this one is compared with in the "vs" column, if any.
    baseline: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name} @{self.batch}"

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")


# --- the benchmark ----------------------------------------------------------------------


class ClaimBench:
    def __init__(
        self,
        queue: queue_module.Queue,
        conn: Connection,
        jobs: int,
        *,
        triggers: bool,
        done_rows: int = 0,
    ) -> None:
        self.queue = queue
        self.conn = conn  # one plain autocommit connection: setup, raw SQL, seed shape
        self.jobs = jobs
        self.triggers = triggers
        self.done_rows = done_rows
        self.enqueue_seconds: list[float] = []
        # job_counts rows left behind by each claim+complete drain, keyed by batch size.
        self.count_rows_left: dict[int, int] = {}

    async def fresh_jobs(self) -> None:
        """An empty jobs table, then ``self.done_rows`` finished jobs (history, written
        first), then ``self.jobs`` pending no-op jobs, analysed."""
        await self.conn.execute("TRUNCATE jobs")
        if self.done_rows:
            await self.conn.execute(INSERT_DONE, {"rows": self.done_rows})
        started = time.perf_counter()
        for first in range(0, self.jobs, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, self.jobs - first)
            await self.queue.enqueue_jobs([types.NewJob(JOB_TYPE)] * count)
        self.enqueue_seconds.append(time.perf_counter() - started)
        await self.conn.execute("ANALYZE jobs")

    async def check_all(self, processed: int, status: str, table: str = "jobs") -> None:
        """Every job was handed out exactly once and ended in ``status``."""
        in_status = self.jobs + (self.done_rows if status == "done" else 0)
        cursor = await self.conn.execute(
            psycopg.sql.SQL("SELECT count(*) FILTER (WHERE status = %s), count(*) FROM {}").format(
                psycopg.sql.Identifier(*table.split("."))
            ),
            (status,),
        )
        row = await cursor.fetchone()
        if processed != self.jobs or row != (in_status, self.jobs + self.done_rows):
            raise RuntimeError(
                f"{table}: processed {processed} of {self.jobs} jobs;"
                f" (in {status!r}, total) = {row}"
            )

    async def check_stats(self) -> None:
        """With the triggers in place, ``get_queue_stats`` agrees with the table."""
        if not self.triggers:
            return
        stats = await self.queue.get_queue_stats()
        cursor = await self.conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
        counted = dict(producer.empty_stats(), **dict(await cursor.fetchall()))
        if stats != counted:
            raise RuntimeError(f"get_queue_stats() = {stats}, but the table holds {counted}")

    # queue API ---------------------------------------------------------------------------

    async def queue_claim_complete(self, batch: int) -> Result:
        await self.fresh_jobs()
        processed = 0
        started = time.perf_counter()
        while claimed := await self.queue.claim_jobs(WORKER, limit=batch):
            for job in claimed:
                await self.queue.complete_job(job.id, worker_id=WORKER)
            processed += len(claimed)
        seconds = time.perf_counter() - started
        await self.check_all(processed, "done")
        self.count_rows_left[batch] = await _common.count(
            self.conn, "SELECT count(*) FROM job_counts"
        )
        await self.check_stats()  # (which folds those rows together)
        return Result("queue claim+complete", batch, processed, seconds, "raw claim+complete")

    async def queue_claim_complete_many(self, batch: int) -> Result:
        """As ``queue_claim_complete``, but each claimed batch is completed by one
        ``Queue.complete_jobs`` statement (present in newer versions of the queue)."""
        await self.fresh_jobs()
        processed = 0
        started = time.perf_counter()
        while claimed := await self.queue.claim_jobs(WORKER, limit=batch):
            completed = await self.queue.complete_jobs(WORKER, [(job.id, None) for job in claimed])
            processed += len(completed)
        seconds = time.perf_counter() - started
        await self.check_all(processed, "done")
        return Result(
            "queue claim+complete_jobs", batch, processed, seconds, "queue claim+complete"
        )

    async def queue_claim_only(self, batch: int) -> Result:
        await self.fresh_jobs()
        processed = 0
        started = time.perf_counter()
        while claimed := await self.queue.claim_jobs(WORKER, limit=batch):
            processed += len(claimed)
        seconds = time.perf_counter() - started
        await self.check_all(processed, "running")
        return Result("queue claim only", batch, processed, seconds, "raw claim")

    # raw SQL: the same statements, one plain connection, tuples -------------------------

    def _claim_params(self, batch: int) -> dict[str, typing.Any]:
        return {
            "worker_id": WORKER,
            "limit": batch,
            "queue": checks.DEFAULT_QUEUE,
            "types": None,
            "now": None,
        }

    async def raw_claim(self, batch: int, *, complete: bool = False) -> Result:
        """Drain with ``job_claim``, and with ``complete`` ``job_complete`` for each row."""
        await self.fresh_jobs()
        claim, params = sql.query("job_claim"), self._claim_params(batch)
        finish = sql.query("job_complete")
        processed = 0
        started = time.perf_counter()
        while True:
            cursor = await self.conn.execute(claim, params)
            rows = await cursor.fetchall()
            if not rows:
                break
            for row in rows if complete else ():
                done = {"id": row[0], "result": None, "worker_id": WORKER, "now": None}
                await self.conn.execute(finish, done)
            processed += len(rows)
        seconds = time.perf_counter() - started
        await self.check_all(processed, "done" if complete else "running")
        name = "raw claim+complete" if complete else "raw claim"
        return Result(name, batch, processed, seconds)

    # the seed's claim shape -------------------------------------------------------------

    async def _seed_drain(self, conn: Connection) -> int:
        processed = 0
        while True:
            async with conn.transaction():
                cursor = await conn.execute(SEED_SELECT)
                row = await cursor.fetchone()
                if row is None:
                    break
                await conn.execute(SEED_UPDATE, {"worker_id": WORKER, "id": row[0]})
            processed += 1
        return processed

    async def seed_claim_current_schema(self) -> Result:
        await self.fresh_jobs()
        started = time.perf_counter()
        processed = await self._seed_drain(self.conn)
        seconds = time.perf_counter() - started
        await self.check_all(processed, "running")
        return Result("seed claim, current schema", 1, processed, seconds, "raw claim")

    async def seed_claim_seed_schema(self, url: str) -> Result:
        """The same jobs copied into a table made by migration 0001 alone, in its own schema."""
        await self.fresh_jobs()
        seed_sql = migrations.load_migrations()[0].sql
        schema = psycopg.sql.Identifier(SEED_SCHEMA)
        await self.conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        await self.conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(schema))
        seed = await psycopg.AsyncConnection.connect(
            url, autocommit=True, options=f"-c search_path={SEED_SCHEMA}"
        )
        async with seed:
            await seed.execute(seed_sql)
            await seed.execute(
                "INSERT INTO jobs (id, type, status, payload, result, attempts, max_attempts,"
                " run_at, locked_at, locked_by, error, created_at, updated_at)"
                " SELECT id, type, status, payload, result, attempts, max_attempts, run_at,"
                " locked_at, locked_by, error, created_at, updated_at"
                " FROM public.jobs ORDER BY priority DESC, run_at, id"
            )
            await seed.execute("ANALYZE jobs")
            started = time.perf_counter()
            processed = await self._seed_drain(seed)
            seconds = time.perf_counter() - started
        await self.check_all(processed, "running", f"{SEED_SCHEMA}.jobs")
        await self.conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
        return Result("seed claim, seed schema", 1, processed, seconds, "raw claim")


async def drop_triggers(conn: Connection) -> None:
    for trigger in TRIGGERS:
        await conn.execute(
            psycopg.sql.SQL("DROP TRIGGER {} ON jobs").format(psycopg.sql.Identifier(trigger))
        )


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    async with _common.scratch_database(server_url, "jobqueue_bench_claim") as url:
        conn = await db.connect(url)
        async with conn:
            await migrations.migrate(conn)
            facts = await _common.server_settings(conn, SERVER_SETTINGS)
            if args.no_count_triggers:
                await drop_triggers(conn)
            async with queue_module.Queue(url) as queue:
                bench = ClaimBench(
                    queue,
                    conn,
                    args.jobs,
                    triggers=not args.no_count_triggers,
                    done_rows=args.done_rows,
                )
                results: list[Result] = []
                for batch in args.batch:
                    results.append(await bench.queue_claim_complete(batch))
                    results.append(await bench.raw_claim(batch, complete=True))
                    if batch > 1 and hasattr(queue, "complete_jobs"):
                        results.append(await bench.queue_claim_complete_many(batch))
                    results.append(await bench.queue_claim_only(batch))
                    results.append(await bench.raw_claim(batch))
                if not args.no_seed:
                    results.append(await bench.seed_claim_seed_schema(url))
                    if args.seed_on_current_schema:
                        results.append(await bench.seed_claim_current_schema())
    enqueue = sum(bench.enqueue_seconds) / len(bench.enqueue_seconds)
    return {
        "facts": facts,
        "results": results,
        "enqueue_seconds": enqueue,
        "count_rows_left": bench.count_rows_left,
    }


# --- output -----------------------------------------------------------------------------


def ratio(result: Result, by_key: dict[str, Result]) -> float | None:
    if result.baseline is None:
        return None
    base = by_key.get(f"{result.baseline} @{result.batch}")
    return None if base is None else result.jobs_per_second / base.jobs_per_second


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    results: list[Result] = outcome["results"]
    by_key = {result.key: result for result in results}
    return json.dumps(
        {
            "benchmark": "claim",
            "server": server,
            **outcome["facts"],
            "jobs": args.jobs,
            "done_rows": args.done_rows,
            "triggers": not args.no_count_triggers,
            "stats_valid": not args.no_count_triggers,
            "notify": not args.no_count_triggers,
            "enqueue_jobs_per_second": args.jobs / outcome["enqueue_seconds"],
            "job_counts_rows_left_by_batch": outcome["count_rows_left"],
            "results": [
                {
                    **dataclasses.asdict(result),
                    "jobs_per_second": round(result.jobs_per_second, 1),
                    "vs_baseline": ratio(result, by_key),
                }
                for result in results
            ],
        },
        indent=2,
    )


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    facts: dict[str, str] = outcome["facts"]
    results: list[Result] = outcome["results"]
    by_key = {result.key: result for result in results}
    lines = [
        f"claim throughput, one process: {args.jobs:,} no-op jobs per measurement"
        + (f", after {args.done_rows:,} done rows" if args.done_rows else ""),
        f"server: {server}, PostgreSQL {facts['server_version']}, fsync={facts['fsync']},"
        f" synchronous_commit={facts['synchronous_commit']},"
        f" shared_buffers={facts['shared_buffers']}",
        "jobs_after_* triggers (stats AND notify): "
        + (
            "DROPPED in the scratch database -- get_queue_stats() would be WRONG here and no"
            " NOTIFY is sent; these figures only show what the triggers cost"
            if args.no_count_triggers
            else "on (as shipped)"
        ),
        "",
        f"{'measurement':<28} {'batch':>5} {'jobs':>7} {'seconds':>8} {'jobs/s':>9}  vs",
        "-" * 72,
    ]
    for result in results:
        share = ratio(result, by_key)
        versus = f"{share:.2f} x {result.baseline}" if share is not None else ""
        lines.append(
            f"{result.name:<28} {result.batch:>5} {result.jobs:>7,} {result.seconds:>8.2f}"
            f" {result.jobs_per_second:>9,.0f}  {versus}"
        )
    lines += [
        "",
        f"enqueue_jobs in chunks of {ENQUEUE_CHUNK:,}:"
        f" {args.jobs / outcome['enqueue_seconds']:,.0f} jobs/s (setup, averaged)",
    ]
    for batch, rows in outcome["count_rows_left"].items():
        lines.append(
            f"job_counts rows left after claim+complete of {args.jobs:,} jobs at batch {batch}:"
            f" {rows:,} (folded when stats are read or by a worker, every ~10 s)"
        )
    seed = by_key.get("seed claim, seed schema @1")
    if seed is not None:
        for batch in args.batch:
            ours = by_key.get(f"raw claim @{batch}")
            if ours is not None:
                lines.append(
                    f"job_claim batch {batch} vs the seed's claim on the seed schema:"
                    f" {ours.jobs_per_second / seed.jobs_per_second:.1f} x"
                )
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Claim throughput of one process (see the module docstring)."
    )
    parser.add_argument(
        "--jobs",
        type=_common.int_between(1, 10_000_000),
        default=20_000,
        help="jobs per measurement",
    )
    parser.add_argument(
        "--batch",
        type=_common.int_between(1, 10_000),
        nargs="+",
        default=[1, 50],
        help="claim limits to measure",
    )
    parser.add_argument(
        "--done-rows",
        type=_common.int_between(0, 100_000_000),
        default=0,
        help="finished jobs in the table before the pending ones (history); slow for the"
        " seed's claim: with 100,000 it claims ~130 jobs/s",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--no-count-triggers",
        action="store_true",
        help="drop the jobs_after_* triggers first: stats AND notify are then off (stats"
        " wrong, idle workers not woken); shows what the triggers cost",
    )
    parser.add_argument(
        "--no-seed", action="store_true", help="skip the seed claim-shape comparison"
    )
    parser.add_argument(
        "--seed-on-current-schema",
        action="store_true",
        help="also run the seed's claim on the current schema (ready index, triggers)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return _common.main(parse_args(argv), run, report_json, report_table)


if __name__ == "__main__":
    sys.exit(main())
