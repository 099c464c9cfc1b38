"""Versioned schema migrations: numbered plain-SQL files applied once each, in order.

``sql/migrations/NNNN_name.sql`` are shipped in the wheel. ``migrate`` applies the missing
ones in a single transaction under an advisory lock, so any number of pods may migrate at
start-up at once: one applies, the others wait and then find nothing to do. Each applied
file's checksum is kept in ``jobqueue_migrations``; editing a file after it shipped is
reported, never silently accepted.

``verify`` answers "is this database what this code expects?": every migration applied with
the same checksum, and the live schema equal to a fresh replay of the migrations. The replay
is made in the session's temporary schema inside a transaction that is rolled back, so it
leaves nothing behind and needs no CREATE right, only the TEMPORARY one every role has by
default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import logging
import re
import typing

import psycopg

from jobqueue import db, plugins, sql

logger = logging.getLogger(__name__)

CORE: typing.Final = "jobqueue"  # the core's component name in the version history
# Arbitrary but fixed: every jobqueue process migrating any database takes this lock.
ADVISORY_LOCK_KEY: typing.Final = 0x6A6F6271_6D696772  # "jobqmigr"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_CREATED_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
# Trigger functions are never looked up in the temporary schema: the replay names it.
_TRIGGER_FUNCTION = re.compile(r"EXECUTE FUNCTION (\w+)")


class MigrationError(RuntimeError):
    """The database's migration history does not fit the code's."""


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    component: str = CORE

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        own = f"{self.version:04d}_{self.name}"
        return own if self.component == CORE else f"{self.component}:{own}"


def load_migrations(package: str = "jobqueue.sql", component: str = CORE) -> list[Migration]:
    """The migrations shipped in ``package``'s ``migrations/`` folder, in version order."""
    folder = importlib.resources.files(package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if not match:
            continue
        text = entry.read_text(encoding="utf-8")
        found.append(Migration(int(match["version"]), match["name"], text, component))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"{component} migration versions must run 1, 2, 3, ... without gaps: {versions}"
        )
    return found


def all_migrations() -> list[Migration]:
    """The core's migrations, then each installed plugin's (by plugin name): the order in
    which ``migrate`` applies them."""
    found = load_migrations()
    for component, package in plugins.migration_packages():
        found += load_migrations(package, component)
    return found


def render(migrations: typing.Sequence[Migration]) -> str:
    """The SQL that ``migrate`` would run, for ``jobqueue db migrate --print``."""
    parts = [f"-- {migration.label}\n{migration.sql.strip()}\n" for migration in migrations]
    return "\n".join(parts)


Applied: typing.TypeAlias = dict[tuple[str, int], tuple[str, str]]
"""``{(component, version): (name, checksum)}`` as recorded in the database."""


async def _applied(conn: psycopg.AsyncConnection[typing.Any]) -> Applied:
    """The recorded history; empty before the first run."""
    cursor = await conn.execute(sql.query("migration_table_exists"))
    row = await cursor.fetchone()
    if not row or not row[0]:
        return {}
    cursor = await conn.execute(sql.query("migration_list"))
    return {
        (component, version): (name, checksum)
        for component, version, name, checksum in await cursor.fetchall()
    }


def _check_history(applied: Applied, known: list[Migration]) -> None:
    by_key = {(migration.component, migration.version): migration for migration in known}
    components = {migration.component for migration in known}
    for (component, version), (name, checksum) in sorted(applied.items()):
        migration = by_key.get((component, version))
        if migration is None and component not in components:
            logger.warning(
                "[Migrate] The database has migrations of %r, which is not installed here",
                component,
            )
            continue
        if migration is None:
            raise MigrationError(
                f"the database has {component} migration {version:04d}_{name}, which this"
                " version of jobqueue does not know: it is newer than this code"
            )
        if checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.label} was changed after it was applied (checksum differs)"
            )


async def migrate(conn: psycopg.AsyncConnection[typing.Any]) -> list[Migration]:
    """Apply the missing migrations; returns those this call applied (often none)."""
    known = all_migrations()
    async with conn.transaction():
        await conn.execute(sql.query("migration_lock"), {"key": ADVISORY_LOCK_KEY})
        await conn.execute(sql.query("migration_table_create"))
        await conn.execute(sql.query("migration_table_upgrade"))
        applied = await _applied(conn)
        _check_history(applied, known)
        pending = [m for m in known if (m.component, m.version) not in applied]
        for migration in pending:
            logger.info("[Migrate] Applying %s", migration.label)
            await conn.execute(migration.sql)
            await conn.execute(
                sql.query("migration_record"),
                {
                    "component": migration.component,
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
    if not pending:
        await _check_tables_exist(conn, known)
        logger.info("[Migrate] Schema is up to date (%s)", ", ".join(_versions(known)))
    return pending


async def _check_tables_exist(
    conn: psycopg.AsyncConnection[typing.Any], known: list[Migration]
) -> None:
    """A recorded migration whose tables are gone (dropped by hand) is not "up to date"."""
    names = [name for migration in known for name in _CREATED_TABLE.findall(migration.sql)]
    cursor = await conn.execute(sql.query("schema_tables_missing"), {"names": names})
    missing = [row[0] for row in await cursor.fetchall()]
    if missing:
        raise MigrationError(
            f"the schema is damaged: {', '.join(missing)} missing although the migrations that"
            " create them are recorded as applied; restore from a backup (or, losing the"
            " queue's data, drop the jobqueue tables and jobqueue_migrations and migrate again)"
        )


async def migrate_database(database_url: str | None = None) -> list[Migration]:
    """``jobqueue db migrate`` from Python: apply the missing migrations to the database at
    ``database_url`` (default ``$DATABASE_URL``); returns those applied."""
    conn = await db.connect(database_url)
    async with conn:
        return await migrate(conn)


def _versions(known: list[Migration]) -> list[str]:
    """``jobqueue 3, books 1``: the latest version of each component."""
    latest: dict[str, int] = {}
    for migration in known:
        latest[migration.component] = max(latest.get(migration.component, 0), migration.version)
    return [f"{component} {version}" for component, version in latest.items()]


async def pending_migrations(conn: psycopg.AsyncConnection[typing.Any]) -> list[Migration]:
    known = all_migrations()
    applied = await _applied(conn)
    _check_history(applied, known)
    return [m for m in known if (m.component, m.version) not in applied]


Fingerprint: typing.TypeAlias = dict[str, set[str]]
"""Description lines grouped by the table or function they belong to."""


async def schema_fingerprint(conn: psycopg.AsyncConnection[typing.Any], schema: str) -> Fingerprint:
    """The description of ``schema``. Must run inside a transaction: it sets the search
    path locally so that catalog functions print names unqualified."""
    await conn.execute(sql.query("schema_search_path_set"), {"schema": schema})
    cursor = await conn.execute(sql.query("schema_describe"), {"schema": schema})
    fingerprint: Fingerprint = {}
    for owner, line in await cursor.fetchall():
        unqualified = line.replace(f"{schema}.", "").replace("pg_temp.", "")
        fingerprint.setdefault(owner, set()).add(unqualified)
    return fingerprint


async def replayed_fingerprint(conn: psycopg.AsyncConnection[typing.Any]) -> Fingerprint:
    """The fingerprint of a fresh replay of every migration, made in this session's
    temporary schema; leaves nothing behind."""

    class _Rollback(Exception):
        pass

    fingerprint: Fingerprint = {}
    try:
        async with conn.transaction():
            await conn.execute(sql.query("schema_search_path_set"), {"schema": "pg_temp"})
            for migration in all_migrations():
                replay = _TRIGGER_FUNCTION.sub(r"EXECUTE FUNCTION pg_temp.\1", migration.sql)
                await conn.execute(replay)
            cursor = await conn.execute(sql.query("schema_temporary_name"))
            row = await cursor.fetchone()
            assert row is not None
            fingerprint = await schema_fingerprint(conn, row[0])
            raise _Rollback
    except _Rollback:
        pass
    return fingerprint


async def live_schema(conn: psycopg.AsyncConnection[typing.Any]) -> str | None:
    """The schema that holds the ``jobs`` table on the current search path, if any."""
    cursor = await conn.execute(sql.query("schema_of_jobs"))
    row = await cursor.fetchone()
    return str(row[0]) if row else None


async def verify(conn: psycopg.AsyncConnection[typing.Any]) -> list[str]:
    """Every way the database differs from what this code expects; empty when it fits."""
    problems: list[str] = []
    try:
        pending = await pending_migrations(conn)
    except MigrationError as error:
        return [str(error)]
    if pending:
        labels = ", ".join(migration.label for migration in pending)
        problems.append(f"schema is behind: not applied: {labels}")
        return problems
    schema = await live_schema(conn)
    if schema is None:
        return ["the jobs table is missing although every migration is recorded as applied"]
    async with conn.transaction():
        live = await schema_fingerprint(conn, schema)
    expected = await replayed_fingerprint(conn)
    # Only what the migrations own is compared: an application's own tables may share the
    # schema, but an index added to ``jobs`` by hand is a difference worth reporting.
    missing, extra = [], []
    for owner, lines in expected.items():
        live_lines = live.get(owner, set())
        missing += sorted(lines - live_lines)
        extra += sorted(live_lines - lines)
    problems += [f"missing or changed: {line}" for line in missing]
    problems += [f"not made by the migrations: {line}" for line in extra]
    return problems
