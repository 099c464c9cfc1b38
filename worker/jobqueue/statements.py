"""Running the core's named queries over a pool or a connection: rows as ``Job`` objects,
rows as job ids, and transaction-scoped advisory locks. Every statement of the queue goes
through these, so each is one round trip and atomic alone."""

from __future__ import annotations

import collections.abc
import typing
import uuid

import psycopg
import psycopg_pool

from jobqueue import db, sql, types

Pool: typing.TypeAlias = psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[typing.Any]]
Params: typing.TypeAlias = collections.abc.Mapping[str, typing.Any]


async def jobs(
    pool: Pool,
    query: str,
    params: Params,
    conn: psycopg.AsyncConnection[typing.Any] | None = None,
    *,
    make: collections.abc.Callable[..., types.Job] = types.Job,
    times_in_range: bool = False,
) -> list[types.Job]:
    """The ``jobs`` rows query ``query`` returns, each built by ``make``; on ``conn``
    (joining its transaction) when given, else on a connection of ``pool``.
    ``times_in_range``: the query returns only times Python can hold (see
    ``db.read_times_plainly``)."""
    if conn is None:
        async with db.Lease(pool) as pooled:
            return await jobs(pool, query, params, pooled, make=make, times_in_range=times_in_range)
    cursor = conn.cursor(row_factory=db.job_row_of(make))
    if times_in_range:
        db.read_times_plainly(cursor)
    await cursor.execute(sql.query(query), params)
    return await cursor.fetchall()


async def rows(pool: Pool, query: str, params: Params) -> list[tuple[typing.Any, ...]]:
    """The rows of query ``query``, as tuples."""
    async with db.Lease(pool) as conn:
        cursor = await conn.execute(sql.query(query), params)
        return await cursor.fetchall()


async def execute(pool: Pool, query: str, params: Params) -> int:
    """Runs query ``query``, which returns no rows; returns how many rows it changed."""
    async with db.Lease(pool) as conn:
        cursor = await conn.execute(sql.query(query), params)
        return cursor.rowcount


async def ids(pool: Pool, query: str, params: Params) -> set[uuid.UUID]:
    """Runs a query whose rows start with a job id; returns those ids."""
    return {row[0] for row in await rows(pool, query, params)}


async def try_lock(conn: psycopg.AsyncConnection[typing.Any], key: int) -> bool:
    """Take the advisory lock ``key`` for the current transaction, if nobody holds it."""
    cursor = await conn.execute(sql.query("advisory_lock_try"), {"key": key})
    row = await cursor.fetchone()
    return bool(row and row[0])
