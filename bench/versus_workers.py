"""The handlers of ``bench/versus.py``'s worker processes, for both queues.

Imported by ``jobqueue worker --no-plugins --import versus_workers`` (``bench/`` on
``PYTHONPATH``); run as ``python bench/versus_workers.py --batch-size N`` it is a PgQueuer
worker: what ``pgq run versus_workers:pgq_worker --batch-size N --log-level warning`` does
(``pgqueuer.run`` on the factory, uvloop, SIGTERM stops it), since ``pgq run`` itself fails
in pgqueuer 1.6.0 with the typer it installs (its ``--log-level`` parser hands
``setup_fancy_logger`` a string where an enum is expected, even for the default).

- jobqueue: the built-in ``jobqueue.noop`` handler (registered here, since ``--no-plugins``
  leaves it out), ``bench.pickup`` and ``bench.soak`` (``bench/soak.py``).
- PgQueuer: ``pgq_worker``, the factory ``pgqueuer.run`` calls: a ``QueueManager`` over one
  asyncpg connection (PgQueuer's default driver) with the entrypoints ``noop``,
  ``pickup`` and ``soak``. PgQueuer is imported only when the factory runs (it is a
  bench-only package).

The pickup handlers send the ``time.monotonic()`` at which they started, with the job's
sequence number, in one UDP datagram to ``127.0.0.1:$BENCH_VERSUS_PICKUP_PORT``. Linux's
monotonic clock is one clock for every process, so the benchmark compares it with its own
readings around the enqueue.
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import importlib
import os
import socket
import sys
import time
import typing

import jobqueue
from jobqueue import plugins, runner

PICKUP_PORT_ENV: typing.Final = "BENCH_VERSUS_PICKUP_PORT"
PGQ_DSN_ENV: typing.Final = "PGDSN"
APP_NAME_ENV: typing.Final = "PGAPPNAME"

_sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def report_start(sequence: str, started: float) -> None:
    """Tell the benchmark that the job numbered ``sequence`` started at ``started``."""
    port = os.environ.get(PICKUP_PORT_ENV)
    if port:
        _sender.sendto(f"{sequence} {started!r}".encode(), ("127.0.0.1", int(port)))


# --- jobqueue ---------------------------------------------------------------------------

if "jobqueue" not in runner.REGISTRY.plugins:  # --no-plugins: the built-in no-op is not there
    plugins.register_core(runner.REGISTRY)
    runner.REGISTRY.plugins.add("jobqueue")


@jobqueue.handler("bench.pickup")
async def pickup(payload: typing.Any, job: jobqueue.Job) -> None:
    started = time.monotonic()
    report_start(str(payload["seq"]), started)


@jobqueue.handler("bench.soak")
async def soak(payload: typing.Any, job: jobqueue.Job) -> None:
    """``bench/soak.py``'s job: its payload is the monotonic time it was enqueued at."""
    report_start(repr(payload["t"]), time.monotonic())


# --- PgQueuer ---------------------------------------------------------------------------


async def pgq_noop(job: typing.Any) -> None:
    return None


async def pgq_pickup(job: typing.Any) -> None:
    started = time.monotonic()
    report_start(bytes(job.payload).decode(), started)


async def pgq_soak(job: typing.Any) -> None:
    report_start(bytes(job.payload).decode(), time.monotonic())


@contextlib.asynccontextmanager
async def pgq_worker() -> collections.abc.AsyncIterator[typing.Any]:
    """``pgq run versus_workers:pgq_worker``: a QueueManager on ``$PGDSN``, its connection
    named ``$PGAPPNAME`` (so the benchmark can see in ``pg_stat_activity`` when it is
    idle)."""
    asyncpg = importlib.import_module("asyncpg")
    pgqueuer = importlib.import_module("pgqueuer")
    connection = await asyncpg.connect(
        dsn=os.environ[PGQ_DSN_ENV],
        server_settings={"application_name": os.environ.get(APP_NAME_ENV, "pgq-bench")},
    )
    try:
        manager = pgqueuer.QueueManager(pgqueuer.Queries(pgqueuer.AsyncpgDriver(connection)))

        manager.entrypoint("noop")(pgq_noop)
        manager.entrypoint("pickup")(pgq_pickup)
        manager.entrypoint("soak")(pgq_soak)
        yield manager
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A PgQueuer worker for bench/versus.py.")
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args(argv)
    pgqueuer = importlib.import_module("pgqueuer")
    logconfig = importlib.import_module("pgqueuer.core.logconfig")
    uvloop = importlib.import_module("uvloop")
    logconfig.setup_fancy_logger(logconfig.LogLevel.WARNING)
    uvloop.run(pgqueuer.run(pgq_worker, batch_size=args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
