"""Where the database is and how to reach it: ``DATABASE_URL``, pools, row factories, what
a database error means, and decoding that survives anything the database accepts.

Errors are sorted once, here, for every caller (worker loops, the CLI): *transient* ones go
away by themselves (a restart, a failover, a read-only window, a killed connection, a
timeout) and are ridden out with backoff; *permanent* ones are configuration that will not
fix itself (a wrong password, an unknown role, database or host, a bad ``sslmode``, a missing
table or privilege) and are reported as such; anything else is not about the database's
availability at all (a bug, bad data) and is never retried blindly.

Values the database stores but Python cannot represent (a jsonb nested deeper than the
interpreter's recursion limit, a number of more digits than ``int`` converts, a timestamp
outside years 1 to 9999) must not make a whole fetch fail: the loaders registered on every
connection we make turn them into an ``types.Undecodable`` marker (JSON) or the nearest
representable time, so one poisoned row fails alone instead of every worker that reads it.
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import functools
import json
import math
import re
import time
import typing

import psycopg
import psycopg.abc
import psycopg.adapt
import psycopg.conninfo
import psycopg.rows
import psycopg.types.json
import psycopg_pool

from jobqueue import settings, sql, types

DATABASE_URL_ENV: typing.Final = settings.DATABASE_URL.env


class ConfigurationError(ValueError):
    """The queue was not told where its database is, or was told something unusable."""


def resolve_database_url(database_url: str | None = None) -> str:
    """``database_url`` if given, else ``$DATABASE_URL``; a clear error when neither is set."""
    url = database_url or settings.DATABASE_URL.from_env()
    if not url:
        raise ConfigurationError(
            f"no database configured: pass database_url or set {DATABASE_URL_ENV}"
            " (e.g. postgresql://user:password@host:5432/dbname)"
        )
    return url


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


# SQLSTATEs (or their two-character classes) of errors that pass by themselves.
_TRANSIENT_STATES: typing.Final = frozenset(
    {
        "08",  # connection exception
        "53",  # insufficient resources (too many connections, out of memory, disk full)
        "58",  # system error (I/O)
        "25006",  # read_only_sql_transaction: a failover or a read-only window
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "55006",  # object_in_use
        "57014",  # query_canceled: statement_timeout, or cancelled by an administrator
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: the server is starting
        "57P05",  # idle_session_timeout
    }
)
# SQLSTATEs of configuration that will not fix itself.
_PERMANENT_STATES: typing.Final = frozenset(
    {
        "28",  # invalid authorization: wrong password, unknown role
        "3D000",  # invalid_catalog_name: no such database
        "42501",  # insufficient_privilege
        "42P01",  # undefined_table: migrations not applied, or the table was dropped
        "42883",  # undefined_function
        "42703",  # undefined_column
        "57P04",  # database_dropped
    }
)
# Connection failures carry no SQLSTATE; their messages tell the permanent ones apart.
_PERMANENT_CONNECT_MESSAGES: typing.Final = re.compile(
    r"role \S+ does not exist|database \S+ does not exist|authentication failed"
    r"|no pg_hba\.conf entry|failed to resolve host|could not translate host name"
    r"|invalid \w+ value|invalid connection option|invalid URI|missing \"=\""
)


def classify_error(error: BaseException) -> ErrorKind | None:
    """Whether ``error`` is about reaching the database, and if so whether it will pass.
    ``None``: it is something else (a bug, bad data), which retrying will not fix."""
    if isinstance(error, psycopg.Error):
        state = error.sqlstate
        if state:
            if state in _PERMANENT_STATES or state[:2] in _PERMANENT_STATES:
                return ErrorKind.PERMANENT
            if state in _TRANSIENT_STATES or state[:2] in _TRANSIENT_STATES:
                return ErrorKind.TRANSIENT
            return None
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            if _PERMANENT_CONNECT_MESSAGES.search(str(error)):
                return ErrorKind.PERMANENT
            return ErrorKind.TRANSIENT
        # A connection string psycopg cannot parse fails before any connection, as a
        # ProgrammingError: a setting to fix, not a bug in the code.
        if isinstance(error, psycopg.ProgrammingError) and _PERMANENT_CONNECT_MESSAGES.search(
            str(error)
        ):
            return ErrorKind.PERMANENT
        return None
    if isinstance(error, OSError | TimeoutError):  # sockets, and our own deadlines
        return ErrorKind.TRANSIENT
    return None


def describe_database_error(error: BaseException) -> str:
    """One line saying what went wrong and whether it will pass by itself."""
    primary = error.diag.message_primary if isinstance(error, psycopg.Error) else None
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    reason = primary or (lines[0] if lines else type(error).__name__)
    kind = classify_error(error)
    if isinstance(error, psycopg.errors.QueryCanceled):
        return f"statement cancelled (statement_timeout, or by an administrator): {reason}"
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        return f"the database is read-only right now (failover or maintenance?): {reason}"
    if kind is ErrorKind.PERMANENT:
        return f"{reason} (permanent: this will not fix itself; check the database settings)"
    if kind is ErrorKind.TRANSIENT and isinstance(
        error, psycopg.OperationalError | psycopg.InterfaceError | OSError
    ):
        return f"cannot reach the database: {reason}"
    return reason


# --- decoding whatever the database holds -----------------------------------------------------


def load_json(data: bytes | bytearray | memoryview | str) -> typing.Any:
    """``json.loads`` that returns ``types.Undecodable`` instead of raising, for values the
    database accepted but Python cannot build (too deep, too many digits)."""
    try:
        # Decoded here: json.loads of bytes first works out their encoding in Python, a
        # third of the cost of a small payload. As UTF-8, which is what it assumes too.
        value = json.loads(data if isinstance(data, str) else str(data, "utf-8"))
    except (RecursionError, ValueError, MemoryError) as error:
        return types.Undecodable(f"{type(error).__name__}: {error}"[:300], _start_of(data))
    # How deep json.loads can go depends on the stack already in use (less under uvloop than
    # under asyncio's own loop): the queue's limit decides, the same everywhere.
    if types.nests_too_deep(value, len(data)):
        return types.Undecodable(
            f"nested more than {types.MAX_JSON_DEPTH} levels deep", _start_of(data)
        )
    return value


def _start_of(data: bytes | bytearray | memoryview | str) -> str:
    text = bytes(data[:80]).decode("utf-8", "replace") if not isinstance(data, str) else data
    return text[:80]


_JobT = typing.TypeVar("_JobT", bound=types.Job)

_STATUSES: typing.Final = {status.value: status for status in types.JobStatus}
_STATUS_INDEX: typing.Final = types.JOB_FIELDS.index("status")

_STANDARD_TIMESTAMPTZ_LOADER: typing.Final = typing.cast(
    type[psycopg.adapt.Loader],
    psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, psycopg.pq.Format.TEXT),
)
_TIME_MIN: typing.Final = datetime.datetime.min.replace(tzinfo=datetime.UTC)
_TIME_MAX: typing.Final = datetime.datetime.max.replace(tzinfo=datetime.UTC)


class _ClampingTimestamptzLoader(psycopg.adapt.Loader):
    """The standard (fast) timestamptz loader, except that a time Python cannot represent
    (before year 1, after 9999, or +-infinity) becomes the earliest or latest one it can."""

    def __init__(self, oid: int, context: psycopg.abc.AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        standard = psycopg.adapters.get_loader(oid, psycopg.pq.Format.TEXT)
        assert standard is not None
        self._standard = standard(oid, context)

    def load(self, data: psycopg.abc.Buffer) -> datetime.datetime:
        try:
            loaded: datetime.datetime = self._standard.load(data)
            return loaded
        except psycopg.DataError:
            text = bytes(data)
            return _TIME_MIN if text.startswith(b"-") or text.endswith(b"BC") else _TIME_MAX


def read_times_plainly(
    cursor: psycopg.AsyncCursor[typing.Any] | psycopg.Cursor[typing.Any],
) -> None:
    """Read ``timestamptz`` on this cursor with the driver's own loader: for a statement
    whose every time is in range by construction (``job_claim``, the inserts), where the
    forgiving loader would cost a Python call a value for nothing."""
    cursor.adapters.register_loader("timestamptz", _STANDARD_TIMESTAMPTZ_LOADER)


def make_decoding_safe(
    conn: psycopg.AsyncConnection[typing.Any] | psycopg.Connection[typing.Any],
) -> None:
    """Register the forgiving loaders on ``conn`` (and so on every cursor it opens)."""
    psycopg.types.json.set_json_loads(load_json, conn)
    conn.adapters.register_loader("timestamptz", _ClampingTimestamptzLoader)


def job_row(
    cursor: psycopg.AsyncCursor[typing.Any] | psycopg.Cursor[typing.Any],
) -> psycopg.rows.RowMaker[types.Job]:
    """Row factory for ``jobs`` rows; columns this version does not know are left out, so an
    older worker keeps running against a newer schema during a rolling upgrade."""
    return job_row_of(types.Job)(cursor)


def job_row_of(
    make: collections.abc.Callable[..., _JobT],
) -> collections.abc.Callable[
    [psycopg.AsyncCursor[typing.Any] | psycopg.Cursor[typing.Any]], psycopg.rows.RowMaker[_JobT]
]:
    """``job_row`` building each row with ``make`` (``types.Job`` or a subclass, or a
    partial of one with the extra fields bound): the worker builds the object its handler
    gets straight from the row, with no copy per job."""

    def factory(
        cursor: psycopg.AsyncCursor[typing.Any] | psycopg.Cursor[typing.Any],
    ) -> psycopg.rows.RowMaker[_JobT]:
        # Called for every statement: the column names come from the result itself, which
        # is cheaper than ``cursor.description``, and their layout is worked out once.
        result = cursor.pgresult
        names = tuple(result.fname(i) or b"" for i in range(result.nfields)) if result else ()
        order, by_name = _job_layout(names)
        if not by_name:
            status = _STATUS_INDEX
            if order == tuple(range(len(names))):  # the columns are the fields, in order

                def make_job_as_is(values: typing.Sequence[typing.Any]) -> _JobT:
                    row = list(values)
                    row[status] = _STATUSES.get(row[status]) or types.JobStatus(row[status])
                    return make(*row)

                return make_job_as_is

            def make_job(values: typing.Sequence[typing.Any]) -> _JobT:
                row = [values[index] for index in order]
                row[status] = _STATUSES.get(row[status]) or types.JobStatus(row[status])
                return make(*row)

            return make_job

        def make_job_by_name(values: typing.Sequence[typing.Any]) -> _JobT:
            fields = {name: values[index] for index, name in zip(order, by_name, strict=True)}
            fields["status"] = types.JobStatus(fields["status"])
            return make(**fields)

        return make_job_by_name

    return factory


@functools.lru_cache(maxsize=64)
def _job_layout(names: tuple[bytes, ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Where each ``Job`` field is in a row of these columns: when the fields present are
    the first ones in order, positions alone (the job is built from positional arguments,
    the cheaper call); else positions and the field names to pass them by."""
    where = {name.decode(errors="replace"): index for index, name in enumerate(names)}
    present = [name for name in types.JOB_FIELDS if name in where]
    order = tuple(where[name] for name in present)
    if present == list(types.JOB_FIELDS[: len(present)]):
        return order, ()
    return order, tuple(present)


async def connect(database_url: str | None = None) -> psycopg.AsyncConnection[typing.Any]:
    """One connection outside any pool (migrations, LISTEN), in autocommit mode."""
    url = resolve_database_url(database_url)
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, **connect_options(url))
    await _set_up(conn)
    return conn


def connect_options(url: str) -> dict[str, typing.Any]:
    """A connect timeout unless the URL sets its own: an unreachable host must fail, not hang."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}  # connecting will report the malformed URL
    if "connect_timeout" in given:
        return {}
    # libpq takes whole seconds, and 1 at least (it treats 0 as "forever").
    return {"connect_timeout": max(1, math.ceil(settings.CONNECT_TIMEOUT.from_env()))}


async def _set_up(conn: psycopg.AsyncConnection[typing.Any]) -> None:
    """What every connection of the queue gets: the forgiving loaders, and the session's
    times in UTC. Times are instants either way; read in UTC, the driver builds each one
    with the standard library's UTC zone, a third of the cost of a named zone (even
    ``Etc/UTC``): five times a claimed job."""
    make_decoding_safe(conn)
    await conn.execute(sql.query("connection_use_utc"))


class Lease:
    """``async with db.Lease(pool) as conn``: a connection of ``pool`` (one of ``make_pool``'s,
    autocommit) for the block, given back after it. The queue's own statements take their
    connections this way rather than through ``pool.connection()``, which ends a transaction
    an autocommit connection does not have: 6-10% of a single enqueue's client instructions.
    A connection given back inside a transaction or mid-statement is rolled back or closed by
    the pool, as with ``pool.connection()``."""

    __slots__ = ("_conn", "_pool")

    def __init__(
        self, pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[typing.Any]]
    ) -> None:
        self._pool = pool

    async def __aenter__(self) -> psycopg.AsyncConnection[typing.Any]:
        self._conn = await self._pool.getconn()
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pool.putconn(self._conn)


class KeptConnection:
    """One connection of ``pool`` kept between calls of a statement that callers run one at
    a time (the single enqueue), with its cursor: ``await kept.fetchone(query, params)``.
    Checking a connection out of the pool and in again, and setting up a cursor, cost as
    much client time as the statement itself (about a sixth of a single enqueue's wall
    time). A call that finds the kept connection in use by another task takes a lease of
    its own, so concurrent callers never wait for each other; so does every call on a pool
    of one connection, which the kept one would take from everything else.

    The connection goes back to the pool on any error or cancellation (the pool closes one
    that is broken or mid-statement, and a database that went away costs one failed call, as
    a leased connection would), after ``KEEP_SECONDS`` (so the pool can still replace it),
    and on ``release()``. Timestamps are read with the driver's loader: the caller's
    statements return only times in range (``read_times_plainly``)."""

    KEEP_SECONDS: typing.ClassVar[float] = 60.0

    __slots__ = ("_busy", "_cursor", "_pool", "_since")

    def __init__(
        self, pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[typing.Any]]
    ) -> None:
        self._pool = pool
        self._cursor: psycopg.AsyncCursor[typing.Any] | None = None
        self._since = 0.0
        self._busy = False

    async def fetchone(
        self, query: str, params: collections.abc.Mapping[str, typing.Any]
    ) -> tuple[typing.Any, ...] | None:
        """The first row ``query`` returns, on the kept connection when it is free."""
        if self._busy or self._pool.max_size < 2:
            async with Lease(self._pool) as conn:
                return await fetchone_plainly(conn, query, params)
        self._busy = True
        try:
            cursor = self._cursor
            if cursor is None or time.monotonic() - self._since > self.KEEP_SECONDS:
                cursor = await self._renew()
            await cursor.execute(query, params)
            return await cursor.fetchone()
        except BaseException:
            await self.release()
            raise
        finally:
            self._busy = False

    async def _renew(self) -> psycopg.AsyncCursor[typing.Any]:
        await self.release()
        conn = await self._pool.getconn()
        self._since = time.monotonic()
        self._cursor = cursor = _plain_cursor(conn)
        return cursor

    async def release(self) -> None:
        """Give the kept connection back to the pool (before the pool closes, say)."""
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            await self._pool.putconn(cursor.connection)


async def fetchone_plainly(
    conn: psycopg.AsyncConnection[typing.Any],
    query: str,
    params: collections.abc.Mapping[str, typing.Any],
) -> tuple[typing.Any, ...] | None:
    """The first row ``query`` returns on ``conn`` (joining its transaction, if any), its
    times read with the driver's loader: for statements that return only times in range
    (``read_times_plainly``)."""
    cursor = _plain_cursor(conn)
    await cursor.execute(query, params)
    return await cursor.fetchone()


def _plain_cursor(conn: psycopg.AsyncConnection[typing.Any]) -> psycopg.AsyncCursor[typing.Any]:
    cursor = conn.cursor()
    read_times_plainly(cursor)
    return cursor


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
        kwargs={
            "autocommit": True,
            "prepare_threshold": 5 if prepared_statements else None,
            **connect_options(resolve_database_url(database_url)),
        },
        configure=_set_up,
        open=False,
        name="jobqueue",
    )
