"""What the benchmarks in ``bench/`` share: the server, a scratch database on it, server
settings for the report, argument parsing, percentiles and the ``main`` frame.

Not run on its own; the scripts import it (``import _common``), which works because Python
puts the script's folder first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import contextlib
import logging
import math
import os
import signal
import statistics
import sys
import time
import typing
import warnings

import psycopg
import psycopg.conninfo
import psycopg.sql

from jobqueue import cli, db, embedded, settings

Connection: typing.TypeAlias = psycopg.AsyncConnection[typing.Any]
Outcome = typing.TypeVar("Outcome")
Report: typing.TypeAlias = collections.abc.Callable[[argparse.Namespace, str, Outcome], str]


# --- server and scratch database --------------------------------------------------------


@contextlib.contextmanager
def postgres_server() -> collections.abc.Iterator[tuple[str, str]]:
    """``(url, description)`` of the server to use: ``$DATABASE_URL``, else an embedded one
    (``pgserver``, in a temporary folder, stopped and deleted on exit)."""
    given = os.environ.get(db.DATABASE_URL_ENV)
    if given:
        yield given, "DATABASE_URL"
        return
    with embedded.embedded_postgres() as url:
        yield url, "embedded pgserver"


async def _drop_database(server_url: str, name: psycopg.sql.Identifier) -> None:
    admin = await psycopg.AsyncConnection.connect(server_url, autocommit=True)
    async with admin:
        await admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@contextlib.asynccontextmanager
async def scratch_database(
    server_url: str, prefix: str, *, keep: bool = False
) -> collections.abc.AsyncIterator[str]:
    """A new, empty database on the server for this run, ``<prefix>_<pid>``; dropped
    afterwards (``WITH (FORCE)``: connections still open to it are closed). With ``keep``,
    the database ``<prefix>`` instead: made only if missing and never dropped, so that the
    next run finds what this one left in it (on a server that outlives the run:
    ``$DATABASE_URL``)."""
    dbname = prefix if keep else f"{prefix}_{os.getpid()}"
    name = psycopg.sql.Identifier(dbname)
    admin = await psycopg.AsyncConnection.connect(server_url, autocommit=True)
    async with admin:
        found = await admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname])
        if not (keep and await found.fetchone()):
            await admin.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
            )
            await admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield psycopg.conninfo.make_conninfo(server_url, dbname=dbname)
    finally:
        if not keep:
            await _drop_database(server_url, name)


async def server_settings(conn: Connection, names: collections.abc.Sequence[str]) -> dict[str, str]:
    """``{name: current_setting(name)}`` for the report's server line."""
    columns = psycopg.sql.SQL(", ").join(
        psycopg.sql.SQL("current_setting({})").format(psycopg.sql.Literal(name)) for name in names
    )
    cursor = await conn.execute(psycopg.sql.SQL("SELECT {}").format(columns))
    row = await cursor.fetchone()
    assert row is not None
    return dict(zip(names, (str(value) for value in row), strict=True))


async def count(conn: Connection, query: str) -> int:
    """The single number a ``SELECT count(*) ...`` returns."""
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


def time_ordered_id(moment: str, random_hex: str) -> str:
    """SQL for a job id laid out as the enqueue calls make them (UUID version 7, see
    ``producer._JobIds``): the milliseconds of the timestamp expression ``moment``, then the
    version and variant around 18 hex digits of the text expression ``random_hex`` (an
    ``md5``). Rows inserted in time order then grow the primary key at its right edge, and
    newest first is the primary key read backwards, as in use."""
    return (
        f"(lpad(to_hex((extract(epoch FROM {moment}) * 1000)::bigint), 12, '0') || '7'"
        f" || substr({random_hex}, 1, 3) || '8' || substr({random_hex}, 4, 15))::uuid"
    )


# --- numbers ----------------------------------------------------------------------------


def percentile(samples: collections.abc.Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest sample that ``fraction`` of them are at or below."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median_seconds(action: collections.abc.Callable[[], object], repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``action``."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def int_between(low: int, high: int) -> collections.abc.Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, got {value}")
        return value

    return parse


# --- the frame of every script ----------------------------------------------------------


def main(
    args: argparse.Namespace,
    run: collections.abc.Callable[
        [argparse.Namespace, str], collections.abc.Coroutine[typing.Any, typing.Any, Outcome]
    ],
    report_json: Report[Outcome],
    report_table: Report[Outcome],
) -> int:
    """Start the server, ``run(args, server_url)`` on the commands' event loop
    (``JOBQUEUE_EVENT_LOOP``), stop the server, print the report (JSON with
    ``args.json``). Library logging is quietened to warnings. SIGTERM is turned into
    KeyboardInterrupt, so that ``finally`` blocks (stopping worker processes, dropping the
    scratch database, stopping the server) run on it as on Ctrl-C."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("jobqueue").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with postgres_server() as (server_url, server):
            # The event loop the commands use too (JOBQUEUE_EVENT_LOOP: uvloop when
            # installed), so the clients measured here run as a worker's do.
            loop = cli.event_loop_factory(settings.EVENT_LOOP.from_env())
            with asyncio.Runner(loop_factory=loop) as runner:
                outcome = runner.run(run(args, server_url))
    except KeyboardInterrupt:
        print("interrupted; everything the benchmark started is stopped", file=sys.stderr)
        return 130
    print(report_json(args, server, outcome) if args.json else report_table(args, server, outcome))
    return 0
