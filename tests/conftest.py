"""Test fixtures: a real PostgreSQL for every test that needs one.

The server is the embedded one from ``pgserver`` (started once per session in a temporary
folder), or the one ``DATABASE_URL`` names. The migrations are applied once to a template
database; each test gets a fresh copy of it (``CREATE DATABASE ... TEMPLATE``), so tests
are isolated and a copy costs milliseconds rather than a replay of the migrations.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import datetime
import itertools
import os
import typing

import psycopg
import psycopg.conninfo
import pytest

import jobqueue
from jobqueue import embedded, migrations, runner
from jobqueue import worker as worker_module

TEMPLATE_DB: typing.Final = "jobqueue_test_template"
_database_numbers = itertools.count(1)


def url_for(server_url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(server_url, dbname=dbname)


@pytest.fixture(scope="session")
def server_url() -> collections.abc.Iterator[str]:
    """A PostgreSQL server on which the tests may create databases."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    # Not under pytest's tmp_path: pytest keeps that tree private to root (0700), and the
    # embedded server, when run as root, runs PostgreSQL as another user that must enter it.
    with embedded.embedded_postgres() as url:
        yield url


def _admin(server_url: str) -> psycopg.Connection[typing.Any]:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def template_db(server_url: str) -> str:
    with _admin(server_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")

    async def apply() -> None:
        conn = await psycopg.AsyncConnection.connect(
            url_for(server_url, TEMPLATE_DB), autocommit=True
        )
        async with conn:
            await migrations.migrate(conn)

    asyncio.run(apply())
    return TEMPLATE_DB


@contextlib.contextmanager
def scratch_database(server_url: str, template: str | None) -> collections.abc.Iterator[str]:
    name = f"jobqueue_test_{os.getpid()}_{next(_database_numbers)}"
    with _admin(server_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        template_clause = f" TEMPLATE {template}" if template else ""
        admin.execute(f"CREATE DATABASE {name}{template_clause}")
    try:
        yield url_for(server_url, name)
    finally:
        with _admin(server_url) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(server_url: str, template_db: str) -> collections.abc.Iterator[str]:
    """A migrated database of this test's own."""
    with scratch_database(server_url, template_db) as url:
        yield url


@pytest.fixture
def empty_database_url(server_url: str) -> collections.abc.Iterator[str]:
    """A database of this test's own with nothing in it, not even the migrations."""
    with scratch_database(server_url, None) as url:
        yield url


@pytest.fixture
async def queue(database_url: str) -> collections.abc.AsyncIterator[jobqueue.Queue]:
    async with jobqueue.Queue(database_url) as opened:
        yield opened


@pytest.fixture
async def conn(
    database_url: str,
) -> collections.abc.AsyncIterator[psycopg.AsyncConnection[typing.Any]]:
    """A plain autocommit connection to the test's database, for looking behind the API."""
    connection = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    async with connection:
        yield connection


@pytest.fixture
def registry() -> runner.Registry:
    return runner.Registry()


class MovableClock:
    """A worker's clock that a test moves (``clock.move(hours=1)``) instead of waiting."""

    def __init__(self) -> None:
        self.at = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.at

    def move(self, **delta: float) -> datetime.datetime:
        self.at += datetime.timedelta(**delta)
        return self.at


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


class WorkerStarter:
    """Starts in-process workers on a test's database (``run_worker(**settings)``). At the
    end each is stopped hard, and a worker that failed fails the test, unless the test took
    its task with ``task(worker)`` to look at the failure itself."""

    def __init__(self, database_url: str, registry: runner.Registry) -> None:
        self.database_url = database_url
        self.registry = registry
        self.started: dict[str, tuple[worker_module.Worker, asyncio.Task[None]]] = {}
        self.taken: set[str] = set()

    def __call__(
        self, *, clock: worker_module.Clock | None = None, **settings: typing.Any
    ) -> worker_module.Worker:
        settings.setdefault("worker_id", f"w{len(self.started)}")
        worker = worker_module.make_worker(
            worker_module.WorkerConfig(**settings),
            database_url=self.database_url,
            registry=self.registry,
            clock=clock,
        )
        task = asyncio.create_task(worker_module.serve(worker))
        self.started[worker.worker_id] = (worker, task)
        return worker

    def task(self, worker: worker_module.Worker) -> asyncio.Task[None]:
        self.taken.add(worker.worker_id)
        return self.started[worker.worker_id][1]

    async def stop_all(self) -> None:
        for worker_id, (worker, task) in self.started.items():
            worker.stop(hard=True)
            if worker_id in self.taken:
                await asyncio.wait({task}, timeout=30)
            else:
                await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def run_worker(
    database_url: str, registry: runner.Registry
) -> collections.abc.AsyncIterator[WorkerStarter]:
    """Starts workers on the test's database; stops them (hard) at the end."""
    starter = WorkerStarter(database_url, registry)
    yield starter
    await starter.stop_all()
