#!/usr/bin/env python3
"""Job control on a big table (issue 21): ``list_jobs`` pages and cancel, retry and delete
by filter, with ``--rows`` (default 10,000,000) jobs in the table.

Setup, in a scratch database: ``--rows`` finished jobs (1% failed with an error text, 0.1%
cancelled, the rest done) over five job types and the last 30 days, with time-ordered ids as
the enqueue calls make them and payloads ``{"bookId": n % 100000, "n": n}``, inserted by one
``INSERT ... SELECT`` with the statistics trigger off (then the counts are rebuilt in one
statement: the trigger's transition tables would hold every row), then ``--pending`` jobs
enqueued with ``Queue.enqueue_batch``, then ``VACUUM (ANALYZE) jobs``.

Measured, each the median (and the worst) of ``--calls`` calls after a warm-up call, one at
a time, through the public API on a ``Queue``:

* a page of 100, newest first: everything; deep in the table (after an id half way down);
  the failed jobs; the failed jobs whose error contains a text; one type's pending jobs;
  payload containment (``{"bookId": 7}``: 100 matches among the 10,000,000; see the note);
* cancel by filter: one type's pending jobs, a batch of 1,000 a statement (the time per
  batch), and retry of those cancelled jobs by filter, likewise; delete of 100 finished
  jobs by id.

The note on payload containment: no index serves ``@>`` (a GIN index on every payload would
cost every enqueue), so a containment filter reads the table newest first until it has a
page: fast when matches are common or recent, a scan when they are rare and old.

Run from the repository root::

    .venv/bin/python bench/control.py                       # 10,000,000 rows
    .venv/bin/python bench/control.py --rows 1000000 --json
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
import jobqueue
from jobqueue import migrations
from jobqueue import queue as queue_module

JOB_TYPES: typing.Final = 5
PAGE: typing.Final = 100

# Finished jobs with ids laid out as the enqueue calls make them (UUID version 7: the time in
# milliseconds first), so that newest first is the primary key read backwards, as in use.
INSERT_FINISHED: typing.Final = f"""
INSERT INTO jobs (id, type, status, payload, attempts, error, run_at, created_at, updated_at)
SELECT {_common.time_ordered_id("stamp", "md5(g::text)")},
       'type_' || mod(g, %(types)s),
       CASE WHEN mod(g, 100) = 0 THEN 'failed' WHEN mod(g, 1000) = 1 THEN 'cancelled'
            ELSE 'done' END,
       jsonb_build_object('bookId', mod(g, 100000), 'n', g),
       1,
       CASE WHEN mod(g, 100) = 0 THEN
            CASE WHEN mod(g, 300) = 0 THEN 'TimeoutError: the embedder did not answer'
                 ELSE 'KeyError: ''bookId''' END END,
       stamp, stamp, stamp + interval '1 second'
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT now() - interval '30 days' * (1 - g::double precision / %(rows)s)
              AS stamp) AS at
"""
RECOUNT: typing.Final = """
DELETE FROM job_counts;
INSERT INTO job_counts (queue, type, pending, running, failed, done, cancelled)
SELECT queue, type, count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'cancelled')
FROM jobs GROUP BY queue, type;
"""


async def list_timing(
    queue: queue_module.Queue,
    calls: int,
    job_filter: jobqueue.JobFilter | None = None,
    after: uuid.UUID | None = None,
) -> dict[str, float]:
    """Milliseconds of ``calls`` calls of one ``list_jobs`` page, after a warm-up call."""
    page = await queue.list_jobs(job_filter, after=after, limit=PAGE)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        page = await queue.list_jobs(job_filter, after=after, limit=PAGE)
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(samples), "max_ms": max(samples), "rows": len(page)}


def per_batch(started: float, rows: int, batch: int) -> dict[str, float]:
    """The time since ``started`` of a bulk operation in batches of ``batch``, per batch."""
    spent = (time.perf_counter() - started) * 1000
    return {"median_ms": spent / max(1, -(-rows // batch)), "max_ms": spent, "rows": rows}


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    async with _common.scratch_database(server_url, "jobqueue_bench_control") as url:
        conn = await _common.Connection.connect(url, autocommit=True)
        async with conn:
            await migrations.migrate(conn)
            began = time.perf_counter()
            await conn.execute("ALTER TABLE jobs DISABLE TRIGGER USER")
            await conn.execute(INSERT_FINISHED, {"rows": args.rows, "types": JOB_TYPES})
            await conn.execute("ALTER TABLE jobs ENABLE TRIGGER USER")
            await conn.execute(RECOUNT)
            loaded = time.perf_counter() - began
        async with queue_module.Queue(url) as queue:
            await queue.enqueue_batch(
                jobqueue.NewJob(f"type_{n % JOB_TYPES}", {"bookId": n}) for n in range(args.pending)
            )
            conn = await _common.Connection.connect(url, autocommit=True)
            async with conn:
                await conn.execute("VACUUM (ANALYZE) jobs")
                middle = await conn.execute(
                    "SELECT id FROM jobs ORDER BY id OFFSET %s LIMIT 1", [args.rows // 2]
                )
                row = await middle.fetchone()
                assert row is not None
                half_way: uuid.UUID = row[0]
            results: dict[str, typing.Any] = {}
            pages: dict[str, jobqueue.JobFilter] = {
                "newest page": jobqueue.JobFilter(),
                "failed": jobqueue.JobFilter(statuses=["failed"]),
                "failed, error contains": jobqueue.JobFilter(
                    statuses=["failed"], error_contains="timeout"
                ),
                "one type's pending": jobqueue.JobFilter(types=["type_3"], statuses=["pending"]),
                "payload contains": jobqueue.JobFilter(payload_contains={"bookId": 7}),
            }
            for name, job_filter in pages.items():
                results[f"list: {name}"] = await list_timing(queue, args.calls, job_filter)
            results["list: a page half way down"] = await list_timing(
                queue, args.calls, after=half_way
            )
            started = time.perf_counter()
            cancelled = await queue.cancel_jobs(
                jobqueue.JobFilter(types=["type_1"], statuses=["pending"]), batch_size=1000
            )
            results["cancel by filter (per batch of 1,000)"] = per_batch(
                started, len(cancelled), 1000
            )
            started = time.perf_counter()
            retried = await queue.retry_jobs(
                jobqueue.JobFilter(types=["type_1"], statuses=["cancelled"]), batch_size=1000
            )
            results["retry by filter (per batch of 1,000)"] = per_batch(started, len(retried), 1000)
            finished = await queue.list_jobs(jobqueue.JobFilter(statuses=["done"]), limit=PAGE)
            started = time.perf_counter()
            deleted = await queue.delete_jobs(jobqueue.JobFilter(ids=[job.id for job in finished]))
            results["delete 100 by id"] = per_batch(started, deleted, PAGE)
    return {"rows": args.rows, "pending": args.pending, "load_seconds": loaded, "results": results}


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    return json.dumps({"server": server, **outcome}, indent=2)


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    lines = [
        f"job control on {outcome['rows']:,} finished + {outcome['pending']:,} pending jobs"
        f" ({server}; loaded in {outcome['load_seconds']:.0f}s), {args.calls} calls each",
        f"{'operation':<42} {'median ms':>10} {'max ms':>10} {'rows':>8}",
    ]
    for name, figures in outcome["results"].items():
        lines.append(
            f"{name:<42} {figures['median_ms']:>10.2f} {figures['max_ms']:>10.2f}"
            f" {figures['rows']:>8}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=_common.int_between(1000, 100_000_000), default=10_000_000)
    parser.add_argument("--pending", type=_common.int_between(0, 1_000_000), default=10_000)
    parser.add_argument("--calls", type=_common.int_between(1, 1000), default=20)
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(_common.main(parse_args(), run, report_json, report_table))
