#!/usr/bin/env python3
"""Many worker processes through one PgBouncer in transaction mode: how many connections
the server sees. ``--workers`` (50) processes, each with its pool going through a real
PgBouncer (Debian's package, as the tests start it: ``tests/support/pgbouncer.py``) whose
pool is ``--pool-size`` (20) server connections, and its LISTEN connection going to the
server itself (``JOBQUEUE_LISTEN_URL``), drain ``--jobs`` jobs of pretend work. Every 0.2 s
it reads PgBouncer's ``SHOW CLIENTS`` and ``SHOW POOLS`` and the server's
``pg_stat_activity``; it prints the peaks, the drain time, and that each job ran once.

    .venv/bin/python bench/pooler.py --workers 50 --pool-size 20
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import typing

ROOT = pathlib.Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the relay helpers' cluster.children
sys.path.insert(0, str(ROOT / "tests" / "support"))

import local_process  # noqa: E402  (found through the paths set just above)
import pgbouncer  # noqa: E402
import psycopg  # noqa: E402

import jobqueue  # noqa: E402
from jobqueue import embedded  # noqa: E402

JOBQUEUE = str(pathlib.Path(sys.executable).with_name("jobqueue"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=20, help="PgBouncer's server pool")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds of work a job")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-bench-pgbouncer-"))
    os.chmod(folder, 0o777)  # the handlers' log, written by the workers
    with embedded.embedded_postgres() as server_url:
        url = psycopg.conninfo.make_conninfo(server_url, dbname="bouncer")
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS bouncer")
            admin.execute("CREATE DATABASE bouncer")
        subprocess.run([JOBQUEUE, "db", "migrate", "--database-url", url], check=True)
        with pgbouncer.running(url, pool_size=args.pool_size) as bouncer:
            report = drain(args, url, bouncer, folder)
    print(json.dumps(report, indent=2) if args.json else table(args, report))
    return 0 if report["ran_once"] else 1


def drain(
    args: argparse.Namespace, url: str, bouncer: pgbouncer.PgBouncer, folder: pathlib.Path
) -> dict[str, typing.Any]:
    log = folder / "runs.log"
    with jobqueue.SyncQueue(bouncer.url, prepared_statements=False) as queue:
        jobs = queue.enqueue_jobs(
            jobqueue.NewJob("test.record", {"log": str(log), "pause": args.pause})
            for _ in range(args.jobs)
        )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests" / "support"),
        "DATABASE_URL": bouncer.url,
        "JOBQUEUE_LISTEN_URL": url,
        "JOBQUEUE_LOG_LEVEL": "warning",
    }
    workers = []
    began = time.monotonic()
    peaks = {"clients": 0, "servers": 0, "server_backends": 0}
    try:
        for number in range(args.workers):
            command = [JOBQUEUE, "worker", "--import", "jobqueue_test_handlers"]
            command += ["--concurrency", str(args.concurrency), "--worker-id", f"w{number}"]
            workers.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, start_new_session=True
                )
            )
        while len(runs(log)) < len(jobs):
            if time.monotonic() - began > 600:
                raise SystemExit("the jobs did not all run within 10 minutes")
            clients = [c for c in bouncer.show("CLIENTS") if c["database"] == "bouncer"]
            peaks["clients"] = max(peaks["clients"], len(clients))
            peaks["servers"] = max(peaks["servers"], bouncer.server_connections("bouncer"))
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'bouncer'"
                    " AND application_name NOT LIKE 'jobqueue-listen%'"
                    " AND pid <> pg_backend_pid()"
                ).fetchone()
                listening = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'jobqueue-listen%'"
                ).fetchone()
            peaks["server_backends"] = max(peaks["server_backends"], int(row[0]) if row else 0)
            peaks["listen"] = max(peaks.get("listen", 0), int(listening[0]) if listening else 0)
            time.sleep(0.2)  # the sampling period (not a wait for anything)
        elapsed = time.monotonic() - began
    finally:
        for worker in workers:
            local_process.stop(worker)
    ran = runs(log)
    return {
        **vars(args),
        **peaks,
        "seconds": round(elapsed, 1),
        "ran_once": sorted(ran) == sorted(str(job.id) for job in jobs),
        "runs": len(ran),
    }


def runs(log: pathlib.Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def table(args: argparse.Namespace, report: dict[str, typing.Any]) -> str:
    return "\n".join(
        [
            f"{args.workers} workers (concurrency {args.concurrency}) through PgBouncer"
            f" (transaction mode, pool of {args.pool_size}), {args.jobs} jobs of"
            f" {args.pause}s: drained in {report['seconds']}s (from the first worker's start),"
            f" each job run once: {report['ran_once']}",
            f"  peak client connections at PgBouncer: {report['clients']}",
            f"  peak server connections PgBouncer held: {report['servers']}",
            f"  peak server backends besides LISTEN (PgBouncer's, and this script's one):"
            f" {report['server_backends']}",
            f"  LISTEN connections straight to the server: {report.get('listen', 0)}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
