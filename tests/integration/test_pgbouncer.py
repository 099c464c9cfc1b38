"""The queue behind a real PgBouncer in transaction mode (Debian's 1.18: no protocol-level
prepared statements): producers and worker processes through it without prepared-statement
or session errors, LISTEN on a direct URL (``JOBQUEUE_LISTEN_URL``) so a new job starts at
once, or no LISTEN at all (poll only); and many client connections sharing a few server
connections."""

from __future__ import annotations

import collections.abc
import os
import pathlib
import subprocess
import sys
import time
import typing

import local_process
import pgbouncer
import pytest
import waiting

import jobqueue

SUPPORT = pathlib.Path(__file__).parents[1] / "support"
JOBQUEUE = str(pathlib.Path(sys.executable).with_name("jobqueue"))

pytestmark = pytest.mark.slow


@pytest.fixture
def bouncer(database_url: str) -> collections.abc.Iterator[pgbouncer.PgBouncer]:
    with pgbouncer.running(database_url, pool_size=4) as running:
        yield running


def start_workers(
    count: int, url: str, log: pathlib.Path, folder: pathlib.Path, *options: str, **env: str
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for number in range(count):
        with open(folder / f"worker-{number}.log", "wb") as output:
            workers.append(
                subprocess.Popen(
                    [
                        JOBQUEUE,
                        "worker",
                        "--import",
                        "jobqueue_test_handlers",
                        "--concurrency",
                        "4",
                        "--worker-id",
                        f"bounced-{number}",
                        *options,
                    ],
                    env={**os.environ, "PYTHONPATH": str(SUPPORT), "DATABASE_URL": url, **env},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return workers


def runs(log: pathlib.Path) -> list[str]:
    """The ids of the jobs run, one line a run (``test.record`` writes them)."""
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def no_errors(folder: pathlib.Path) -> None:
    for path in folder.glob("worker-*.log"):
        text = path.read_text()
        for bad in ("prepared statement", "ERROR", "Traceback", "does not exist"):
            assert bad not in text, f"{path.name}:\n{text[-3000:]}"


def enqueue_through(
    bouncer: pgbouncer.PgBouncer, log: pathlib.Path, count: int, pause: float = 0.0
) -> list[str]:
    """Jobs enqueued through PgBouncer every way a producer does: one at a time (more than
    psycopg's five runs before it would prepare a statement), in a batch; then read back."""
    with jobqueue.SyncQueue(bouncer.url, prepared_statements=False) as queue:
        payload = {"log": str(log), "pause": pause}
        single = [queue.enqueue_job("test.record", payload) for _ in range(count // 2)]
        batch = queue.enqueue_jobs(
            jobqueue.NewJob("test.record", payload) for _ in range(count - len(single))
        )
        ids = [str(job.id) for job in [*single, *batch]]
        assert queue.get_queue_stats()["pending"] >= count
        assert len(queue.list_jobs(limit=count)) == count
        return ids


def test_workers_through_pgbouncer_listen_on_a_direct_url_and_start_jobs_at_once(
    bouncer: pgbouncer.PgBouncer, database_url: str, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "runs.log"
    ids = enqueue_through(bouncer, log, 60, pause=0.3)
    workers = start_workers(
        3, bouncer.url, log, tmp_path, "--poll-interval", "60", JOBQUEUE_LISTEN_URL=database_url
    )
    dbname = database_dbname(database_url)
    seen: dict[str, list[int]] = {"clients": [], "servers": []}

    def all_run() -> bool:
        # Meanwhile: the client connections PgBouncer serves, and its server connections.
        clients = [c for c in bouncer.show("CLIENTS") if c["database"] == dbname]
        seen["clients"].append(len(clients))
        seen["servers"].append(bouncer.server_connections(dbname))
        return len(runs(log)) >= len(ids)

    try:
        waiting.eventually_sync(all_run, timeout=60, what="all run")
        assert sorted(runs(log)) == sorted(ids)  # each once
        # A job enqueued now starts at once: NOTIFY reached the workers through their direct
        # LISTEN connection (their poll is a minute apart).
        with jobqueue.SyncQueue(bouncer.url, prepared_statements=False) as queue:
            sent = time.monotonic()
            late = queue.enqueue_job("test.record", {"log": str(log)})
            waiting.eventually_sync(
                lambda: str(late.id) in runs(log), timeout=20, what="the new job run"
            )
            assert time.monotonic() - sent < 10
        # Three workers of up to 7 pooled connections each: PgBouncer's pool of 4 server
        # connections is all they ever had.
        assert max(seen["clients"]) > 4 >= max(seen["servers"]), seen
    finally:
        for worker in workers:
            local_process.stop(worker)
    no_errors(tmp_path)


def test_workers_through_pgbouncer_without_listen_poll(
    bouncer: pgbouncer.PgBouncer, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "runs.log"
    ids = enqueue_through(bouncer, log, 40)
    workers = start_workers(2, bouncer.url, log, tmp_path, "--no-listen", "--poll-interval", "0.2")
    try:
        waiting.eventually_sync(lambda: len(runs(log)) >= len(ids), timeout=60, what="all run")
        assert sorted(runs(log)) == sorted(ids)
    finally:
        for worker in workers:
            local_process.stop(worker)
    no_errors(tmp_path)


def database_dbname(url: str) -> str:
    import psycopg.conninfo

    return typing.cast(str, psycopg.conninfo.conninfo_to_dict(url)["dbname"])
