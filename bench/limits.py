#!/usr/bin/env python3
"""What concurrency limits cost the drain (issue 25): ``--processes`` (3) ``jobqueue worker``
processes of ``--concurrency`` (50) drain ``--jobs`` (30,000) no-op jobs enqueued at once,
in four set-ups of the same scratch database, taking turns within each repetition
(``--repeats``, 3; medians reported):

- ``plain``: no concurrency keys, no limits: the plain claim;
- ``keys``: the jobs spread over ``--keys`` (100) concurrency keys, no limits: still the
  plain claim (a queue without limits pays nothing for keys);
- ``turns``: the same keys, a per-key limit row without a number: the limited claim
  (``jobs_claim_limited``), taking turns between keys, no key capped;
- ``limited``: the same keys, at most ``--per-key`` (2) of each running at once.

While the limited set-ups drain, a sampler reads how many jobs of each key run every 10 ms
and reports the most seen (never above the limit, or the limit is broken), with how many
of the samples had a key at its limit. The ratio to ``plain`` is the figure of the issue
(goal: ``limited`` at least 0.8x).

    .venv-bench/bin/python bench/limits.py              # about 2 minutes
    .venv-bench/bin/python bench/limits.py --repeats 1 --jobs 10000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import statistics
import tempfile
import time
import typing

import _common
import versus
import worker
from jobqueue import db, migrations, types
from jobqueue import queue as queue_module

SETUPS: typing.Final = ("plain", "keys", "turns", "limited")
SAMPLE_SECONDS: typing.Final = 0.01
RUNNING_BY_KEY: typing.Final = """
SELECT coalesce(max(running), 0), coalesce(bool_or(running >= %s), false) FROM (
    SELECT count(*) AS running FROM jobs
    WHERE status = 'running' AND concurrency_key IS NOT NULL
    GROUP BY concurrency_key
) AS keys
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Drain:
    setup: str
    repeat: int
    jobs: int
    seconds: float
    most_running_per_key: int | None
    samples_at_limit: float | None  # the share of samples with a key at its limit
    other_share: float | None

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds


async def sample_running(
    conn: _common.Connection, limit: int, stop: asyncio.Event
) -> tuple[int, float]:
    most, at_limit, samples = 0, 0, 0
    while not stop.is_set():
        cursor = await conn.execute(RUNNING_BY_KEY, [limit])
        row = await cursor.fetchone()
        assert row is not None
        most, at_limit, samples = max(most, int(row[0])), at_limit + bool(row[1]), samples + 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
    return most, at_limit / max(samples, 1)


async def set_up(queue: queue_module.Queue, setup: str, per_key: int) -> None:
    await queue.remove_limit(per_key=True)
    if setup == "turns":
        await queue.limit_concurrency(None, per_key=True)
    elif setup == "limited":
        await queue.limit_concurrency(per_key, per_key=True)


async def drain(
    bench: worker.Setup,
    sampler: _common.Connection,
    args: argparse.Namespace,
    setup: str,
    repeat: int,
) -> Drain:
    await bench.conn.execute("TRUNCATE jobs")
    await set_up(bench.queue, setup, args.per_key)
    options = ["--concurrency", str(args.concurrency)]
    mode = worker.log_mode("warning")
    async with worker.running_workers(
        bench.url, args.processes, options, mode, bench.folder
    ) as workers:
        await worker.wait_idle(bench.conn, workers, listen=True)
        meter = worker.CpuMeter(workers, bench.local_server)
        await meter.start(bench.conn)
        keyed = setup != "plain"
        new = [
            types.NewJob(
                worker.JOB_TYPE, concurrency_key=f"key-{n % args.keys:03}" if keyed else None
            )
            for n in range(args.jobs)
        ]
        stop = asyncio.Event()
        sampling = (
            asyncio.create_task(sample_running(sampler, args.per_key, stop))
            if setup in ("turns", "limited")
            else None
        )
        async with bench.queue.pool.connection() as conn:
            async with conn.transaction():
                await bench.queue.enqueue_jobs(new, conn=conn)
            started = time.perf_counter()  # the commit makes them visible, and notifies
        await worker.wait_all_done(bench, args.jobs, workers)
        seconds = time.perf_counter() - started
        stop.set()
        sampled = await sampling if sampling is not None else None
        await meter.stop(bench.conn)
    return Drain(
        setup,
        repeat,
        args.jobs,
        seconds,
        None if sampled is None else sampled[0],
        None if sampled is None else sampled[1],
        meter.other_share,
    )


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    async with _common.scratch_database(server_url, "jobqueue_bench_limits") as url:
        conn = await db.connect(url)
        sampler = await db.connect(url)
        async with conn, sampler, queue_module.Queue(url, pool_max_size=2) as queue:
            await migrations.migrate(conn)
            with tempfile.TemporaryDirectory(prefix="jobqueue-bench-") as folder:
                bench = worker.Setup(url, conn, queue, pathlib.Path(folder), args.local_server)
                drains = []
                for repeat in range(args.repeats):
                    turn = SETUPS[repeat % len(SETUPS) :] + SETUPS[: repeat % len(SETUPS)]
                    for setup in turn:
                        versus.progress(f"{setup}, repetition {repeat + 1} of {args.repeats}")
                        drains.append(await drain(bench, sampler, args, setup, repeat))
    return {"drains": drains}


def medians(drains: list[Drain]) -> dict[str, float]:
    return {
        setup: statistics.median(d.jobs_per_second for d in drains if d.setup == setup)
        for setup in SETUPS
    }


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    return json.dumps(
        {
            "server": server,
            "arguments": vars(args),
            "drains": [dataclasses.asdict(d) for d in outcome["drains"]],
            "medians_jobs_per_second": medians(outcome["drains"]),
        },
        indent=2,
    )


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    drains: list[Drain] = outcome["drains"]
    median = medians(drains)
    lines = [
        f"server: {server}; {args.processes} workers x concurrency {args.concurrency},"
        f" {args.jobs:,} no-op jobs a drain, {args.keys} keys, per-key limit {args.per_key}",
        "",
        "setup     median jobs/s  vs plain   runs (jobs/s)              most running a key"
        "  at limit",
        "-" * 98,
    ]
    for setup in SETUPS:
        runs = [d for d in drains if d.setup == setup]
        most = [d.most_running_per_key for d in runs if d.most_running_per_key is not None]
        shares = [d.samples_at_limit for d in runs if d.samples_at_limit is not None]
        lines.append(
            f"{setup:<9} {median[setup]:>13,.0f}  {median[setup] / median['plain']:>7.2f}x   "
            + f"{', '.join(f'{d.jobs_per_second:,.0f}' for d in runs):<26} "
            + (f"{max(most):>18}" if most else f"{'-':>18}")
            + (f"  {max(shares):>7.0%}" if shares else "")
            + ("  other " + worker._other(max((d.other_share or 0) for d in runs)))
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=_common.int_between(1, 10_000_000), default=30_000)
    parser.add_argument("--processes", type=_common.int_between(1, 32), default=3)
    parser.add_argument("--concurrency", type=_common.int_between(1, 1000), default=50)
    parser.add_argument("--keys", type=_common.int_between(1, 100_000), default=100)
    parser.add_argument("--per-key", type=_common.int_between(1, 1000), default=2)
    parser.add_argument("--repeats", type=_common.int_between(1, 100), default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    args.local_server = not os.environ.get(db.DATABASE_URL_ENV)  # else no server CPU
    return args


def main(argv: list[str] | None = None) -> int:
    return _common.main(parse_args(argv), run, report_json, report_table)


if __name__ == "__main__":
    raise SystemExit(main())
