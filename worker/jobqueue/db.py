"""Where the database is and how to reach it: ``DATABASE_URL``, pools, row factories."""

from __future__ import annotations

import os
import typing

import psycopg
import psycopg.rows
import psycopg_pool

from jobqueue import types

DATABASE_URL_ENV: typing.Final = "DATABASE_URL"


class ConfigurationError(ValueError):
    """The queue was not told where its database is, or was told something unusable."""


def resolve_database_url(database_url: str | None = None) -> str:
    """``database_url`` if given, else ``$DATABASE_URL``; a clear error when neither is set."""
    url = database_url or os.environ.get(DATABASE_URL_ENV)
    if not url:
        raise ConfigurationError(
            f"no database configured: pass database_url or set {DATABASE_URL_ENV}"
            " (e.g. postgresql://user:password@host:5432/dbname)"
        )
    return url


def job_row(
    cursor: psycopg.AsyncCursor[typing.Any] | psycopg.Cursor[typing.Any],
) -> psycopg.rows.RowMaker[types.Job]:
    """Row factory for ``jobs`` rows; columns this version does not know are left out, so an
    older worker keeps running against a newer schema during a rolling upgrade."""
    names = [column.name for column in cursor.description or ()]
    keep = [(index, name) for index, name in enumerate(names) if name in types.JOB_FIELDS]

    def make_job(values: typing.Sequence[typing.Any]) -> types.Job:
        fields = {name: values[index] for index, name in keep}
        fields["status"] = types.JobStatus(fields["status"])
        return types.Job(**fields)

    return make_job


async def connect(database_url: str | None = None) -> psycopg.AsyncConnection[typing.Any]:
    """One connection outside any pool (migrations, LISTEN), in autocommit mode."""
    return await psycopg.AsyncConnection.connect(
        resolve_database_url(database_url), autocommit=True
    )


def make_pool(
    database_url: str | None = None,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 30.0,
    prepared_statements: bool = True,
) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[typing.Any]]:
    """A pool of autocommit connections; opened by the caller (``await pool.open()``).
    ``timeout``: how long a caller waits for a connection before ``PoolTimeout``.
    ``prepared_statements=False`` for PgBouncer in transaction mode, where a statement
    prepared on one server connection is unknown on the next."""
    return psycopg_pool.AsyncConnectionPool(
        resolve_database_url(database_url),
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": True, "prepare_threshold": 5 if prepared_statements else None},
        open=False,
        name="jobqueue",
    )
