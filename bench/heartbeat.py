#!/usr/bin/env python3
"""What a heartbeat costs PostgreSQL, before and after migration 0009 (issue 24).

Until migration 0008 the running jobs' index held ``heartbeat_at``, so every heartbeat wrote
a new version of each row with new entries in every index of the table. Migration 0009
indexes ``(queue, locked_by)`` instead and leaves room on each page (fillfactor 85), so a
heartbeat can be a HOT update: the new version on the same page, no index entry at all.

Two scratch databases, both migrated as shipped; in the one standing for "before", the
0008 definitions are put back (the index on ``heartbeat_at``, the table's storage
parameters reset). In each, ``--jobs`` jobs are enqueued and claimed by ``--workers`` worker
ids, then every worker heartbeats its jobs ``--rounds`` times with the worker's own
statement (``Queue.heartbeat``), the two databases taking turns round by round. Reported per
heartbeat row: the share of HOT updates (``pg_stat_user_tables``), WAL bytes
(``pg_current_wal_lsn``), index bytes added, and microseconds. Run from the repository
root::

    .venv/bin/python bench/heartbeat.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing

import _common
from jobqueue import db, migrations, types
from jobqueue import queue as queue_module

BEFORE_0009: typing.Final = (
    "DROP INDEX jobs_running_idx",
    "CREATE INDEX jobs_running_idx ON jobs (queue, heartbeat_at) WHERE status = 'running'",
    "ALTER TABLE jobs RESET (fillfactor, autovacuum_vacuum_scale_factor,"
    " autovacuum_vacuum_threshold, autovacuum_vacuum_insert_scale_factor,"
    " autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_delay)",
)
READING: typing.Final = """
SELECT n_tup_upd, n_tup_hot_upd, pg_current_wal_lsn(), pg_indexes_size('jobs'::regclass)
FROM pg_stat_user_tables WHERE relname = 'jobs'
"""


@dataclasses.dataclass
class Schema:
    name: str
    queue: queue_module.Queue
    conn: _common.Connection
    held: dict[str, list[typing.Any]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    start: tuple[typing.Any, ...] = ()

    async def reading(self) -> tuple[typing.Any, ...]:
        await self.conn.execute("SELECT pg_stat_force_next_flush()")
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        cursor = await self.conn.execute(READING)
        row = await cursor.fetchone()
        assert row is not None
        return tuple(row)


async def prepare(schema: Schema, args: argparse.Namespace) -> None:
    await schema.queue.enqueue_batch([types.NewJob("jobqueue.noop")] * args.jobs)
    per_worker = args.jobs // args.workers
    for number in range(args.workers):
        worker_id = f"bench-heartbeat-{number}"
        jobs = await schema.queue.claim_jobs(worker_id, limit=per_worker)
        schema.held[worker_id] = [job.id for job in jobs]
    await schema.conn.execute("VACUUM jobs")  # the claims' dead versions out of the way
    schema.start = await schema.reading()


async def heartbeat_round(schema: Schema) -> None:
    started = time.perf_counter()
    for worker_id, ids in schema.held.items():
        await schema.queue.heartbeat(worker_id, ids)
    schema.seconds += time.perf_counter() - started


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    figures: dict[str, dict[str, float]] = {}
    async with (
        _common.scratch_database(server_url, "jobqueue_bench_heartbeat_before") as before_url,
        _common.scratch_database(server_url, "jobqueue_bench_heartbeat_after") as after_url,
    ):
        schemas = []
        for name, url in (("before 0009", before_url), ("0009", after_url)):
            conn = await db.connect(url)
            await migrations.migrate(conn)
            if name == "before 0009":
                for statement in BEFORE_0009:
                    await conn.execute(statement)
            schemas.append(Schema(name, queue_module.Queue(url), conn))
        try:
            for schema in schemas:
                await schema.queue.open()
                await prepare(schema, args)
            for _ in range(args.rounds):
                for schema in schemas:
                    await heartbeat_round(schema)
            for schema in schemas:
                updates, hot, wal, indexes = await schema.reading()
                start_updates, start_hot, start_wal, start_indexes = schema.start
                wal_cursor = await schema.conn.execute(
                    "SELECT %s::pg_lsn - %s::pg_lsn", [wal, start_wal]
                )
                wal_row = await wal_cursor.fetchone()
                assert wal_row is not None
                rows = args.rounds * args.jobs
                figures[schema.name] = {
                    "rows": rows,
                    "hot_share": (hot - start_hot) / max(updates - start_updates, 1),
                    "wal_bytes_per_row": float(wal_row[0]) / rows,
                    "index_bytes_added": indexes - start_indexes,
                    "us_per_row": schema.seconds / rows * 1e6,
                }
        finally:
            for schema in schemas:
                await schema.queue.close()
                await schema.conn.close()
    return figures


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    lines = [
        f"Heartbeats: {args.jobs:,} running jobs of {args.workers} workers, {args.rounds} rounds"
        f" ({server}).",
        f"{'':14}{'HOT share':>12}{'WAL B/row':>12}{'index +KiB':>12}{'us/row':>10}",
    ]
    lines.extend(
        f"{name:14}{row['hot_share']:>12.1%}{row['wal_bytes_per_row']:>12.0f}"
        f"{row['index_bytes_added'] / 1024:>12.0f}{row['us_per_row']:>10.1f}"
        for name, row in outcome.items()
    )
    return "\n".join(lines)


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    return json.dumps({"server": server, "figures": outcome}, indent=2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Heartbeats before and after migration 0009.")
    parser.add_argument("--jobs", type=_common.int_between(100, 1_000_000), default=5_000)
    parser.add_argument("--workers", type=_common.int_between(1, 1_000), default=50)
    parser.add_argument("--rounds", type=_common.int_between(1, 1_000), default=20)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return _common.main(parse_args(argv), run, report_json, report_table)


if __name__ == "__main__":
    sys.exit(main())
