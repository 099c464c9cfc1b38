#!/usr/bin/env python3
"""What a schema change costs each insert: the same single-row ``INSERT`` into ``jobs`` of
a database migrated up to ``--against`` (an earlier core migration) and of one migrated to
the latest, taking turns.

A migration that adds an index, a partial index's predicate, a trigger's work or a column
makes every enqueue pay on the server; this measures exactly that, without the client and
without the commit's flush (``synchronous_commit = off``), which would drown it. Each round
inserts ``--inserts`` rows one statement at a time (autocommit, prepared), the two databases
alternating round by round and in turn which goes first; the report gives the median µs per
insert of each and their ratio.

    .venv/bin/python bench/schema_cost.py --against 3      # before job control (issue 21)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import typing
import uuid

import _common
from jobqueue import migrations

INSERT: typing.Final = (
    "INSERT INTO jobs (id, type, queue, priority, max_attempts) VALUES (%s, 'a', 'default', 0, 3)"
)


async def migrated(url: str, upto: int | None) -> _common.Connection:
    """A connection to ``url`` after the core's migrations up to number ``upto`` (``None``:
    every migration, as ``jobqueue db migrate`` applies them)."""
    conn = await _common.Connection.connect(url, autocommit=True)
    if upto is None:
        await migrations.migrate(conn)
    else:
        for migration in migrations.load_migrations():
            if migration.version <= upto:
                await conn.execute(migration.sql)
    await conn.execute("SET synchronous_commit = off")
    return conn


async def microseconds_per_insert(conn: _common.Connection, inserts: int) -> float:
    began = time.perf_counter()
    for _ in range(inserts):
        await conn.execute(INSERT, [uuid.uuid4()], prepare=True)
    return (time.perf_counter() - began) / inserts * 1e6


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    async with (
        _common.scratch_database(server_url, "jobqueue_bench_before") as before_url,
        _common.scratch_database(server_url, "jobqueue_bench_after") as after_url,
    ):
        before = await migrated(before_url, args.against)
        after = await migrated(after_url, None)
        samples: dict[str, list[float]] = {"before": [], "after": []}
        async with before, after:
            for round_number in range(args.rounds):
                order = [("before", before), ("after", after)]
                for name, conn in order if round_number % 2 == 0 else order[::-1]:
                    samples[name].append(await microseconds_per_insert(conn, args.inserts))
    return {
        "against": args.against,
        "before_us": statistics.median(samples["before"]),
        "after_us": statistics.median(samples["after"]),
        "samples": samples,
    }


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    return json.dumps({"server": server, **outcome}, indent=2)


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    before, after = outcome["before_us"], outcome["after_us"]
    return "\n".join(
        [
            f"one INSERT into jobs, {args.rounds} rounds of {args.inserts:,} ({server},"
            " synchronous_commit off), medians:",
            f"  migrated to {outcome['against']}: {before:.1f} µs",
            f"  migrated to the latest:  {after:.1f} µs ({after / before:.3f}x)",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--against",
        type=_common.int_between(1, 10_000),
        required=True,
        help="the core migration to compare with",
    )
    parser.add_argument("--inserts", type=_common.int_between(100, 1_000_000), default=2000)
    parser.add_argument("--rounds", type=_common.int_between(2, 100), default=8)
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(_common.main(parse_args(), run, report_json, report_table))
