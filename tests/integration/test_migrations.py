"""Migrations (S1, S2): the seed's table, replay equals the live schema, concurrent runs."""

from __future__ import annotations

import asyncio
import typing

import psycopg
import pytest

from jobqueue import migrations

# The seed's table (S1), column for column: (type, not null, default).
SEED_COLUMNS: typing.Final = {
    "id": ("uuid", True, "gen_random_uuid()"),
    "type": ("text", True, None),
    "status": ("text", True, "'pending'::text"),
    "payload": ("jsonb", False, None),
    "result": ("jsonb", False, None),
    "attempts": ("integer", True, "0"),
    "max_attempts": ("integer", True, "3"),
    "run_at": ("timestamp with time zone", True, "now()"),
    "locked_at": ("timestamp with time zone", False, None),
    "locked_by": ("text", False, None),
    "error": ("text", False, None),
    "created_at": ("timestamp with time zone", True, "now()"),
    "updated_at": ("timestamp with time zone", True, "now()"),
}
# What the queue adds; each has a default or is nullable, so seed-shaped inserts work.
ADDED_COLUMNS: typing.Final = {
    "queue": ("text", True, "'default'::text"),
    "priority": ("integer", True, "0"),
    "heartbeat_at": ("timestamp with time zone", False, None),
    "cancel_requested_at": ("timestamp with time zone", False, None),
    "unique_key": ("text", False, None),
    "unique_period_start": ("timestamp with time zone", False, None),
    "follow_ups": ("uuid[]", False, None),
    "concurrency_key": ("text", False, None),
}


async def columns(
    conn: psycopg.AsyncConnection[typing.Any],
) -> dict[str, tuple[str, bool, str | None]]:
    cursor = await conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = 'jobs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """
    )
    return {
        name: (kind, notnull, default) for name, kind, notnull, default in await cursor.fetchall()
    }


async def test_jobs_table_has_the_seed_columns_then_additions(
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    found = await columns(conn)
    assert list(found)[: len(SEED_COLUMNS)] == list(SEED_COLUMNS)
    assert found == {**SEED_COLUMNS, **ADDED_COLUMNS}
    cursor = await conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'jobs'::regclass AND contype = 'p'"
    )
    assert await cursor.fetchone() == ("PRIMARY KEY (id)",)


async def test_claim_uses_the_ready_index(conn: psycopg.AsyncConnection[typing.Any]) -> None:
    await conn.execute(
        "INSERT INTO jobs (type, status) SELECT 't', 'done' FROM generate_series(1, 20000)"
    )
    await conn.execute("INSERT INTO jobs (type) SELECT 't' FROM generate_series(1, 100)")
    await conn.execute("ANALYZE jobs")
    async with conn.transaction():
        cursor = await conn.execute(
            "EXPLAIN SELECT id FROM jobs WHERE status = 'pending' AND queue = 'default'"
            " AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT 50"
            " FOR UPDATE SKIP LOCKED"
        )
        plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "jobs_ready_idx" in plan, plan
    assert "Sort" not in plan, plan


async def test_migrate_applies_each_version_once_and_is_idempotent(
    empty_database_url: str,
) -> None:
    conn = await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True)
    async with conn:
        applied = await migrations.migrate(conn)
        assert applied == migrations.all_migrations()
        assert [m.label for m in applied][-1] == "books:0001_books", "plugins after the core"
        assert await migrations.migrate(conn) == []
        cursor = await conn.execute(
            "SELECT component, version FROM jobqueue_migrations ORDER BY component, version"
        )
        assert await cursor.fetchall() == sorted((m.component, m.version) for m in applied)
        assert await migrations.verify(conn) == []


async def test_eight_concurrent_migrations_apply_once(empty_database_url: str) -> None:
    async def one() -> list[migrations.Migration]:
        conn = await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True)
        async with conn:
            return await migrations.migrate(conn)

    results = await asyncio.gather(*(one() for _ in range(8)))
    known = migrations.all_migrations()
    assert sorted(len(result) for result in results) == [0] * 7 + [len(known)]
    conn = await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True)
    async with conn:
        cursor = await conn.execute("SELECT count(*) FROM jobqueue_migrations")
        assert await cursor.fetchone() == (len(known),)
        assert await migrations.verify(conn) == []


async def test_replay_yields_the_migrated_schema(
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    schema = await migrations.live_schema(conn)
    assert schema == "public"
    async with conn.transaction():
        live = await migrations.schema_fingerprint(conn, schema)
    replayed = await migrations.replayed_fingerprint(conn)
    assert replayed == live
    assert {"jobs", "job_counts", "jobs_record_change"} <= set(live)
    assert any("jobs_ready_idx" in line for line in live["jobs"])
    cursor = await conn.execute("SELECT to_regnamespace('jobqueue_verify_scratch')")
    assert await cursor.fetchone() == (None,), "the scratch schema was left behind"


async def test_verify_reports_a_schema_behind(empty_database_url: str) -> None:
    conn = await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True)
    async with conn:
        (problem,) = await migrations.verify(conn)
        assert problem.startswith("schema is behind: not applied: 0001_jobs")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("DROP INDEX jobs_ready_idx", "missing or changed: index CREATE INDEX jobs_ready_idx"),
        ("CREATE INDEX extra_idx ON jobs (type)", "not made by the migrations: index CREATE"),
        ("ALTER TABLE jobs ALTER COLUMN max_attempts SET DEFAULT 5", "column jobs.max_attempts"),
        ("DROP TRIGGER jobs_after_update ON jobs", "trigger CREATE TRIGGER jobs_after_update"),
        ("UPDATE jobqueue_migrations SET checksum = 'x' WHERE version = 1", "was changed"),
        (
            "INSERT INTO jobqueue_migrations (version, name, checksum) VALUES (999, 'future', 'x')",
            "newer than this code",
        ),
    ],
)
async def test_verify_reports_a_schema_that_differs(
    conn: psycopg.AsyncConnection[typing.Any], change: str, expected: str
) -> None:
    await conn.execute(change)
    problems = await migrations.verify(conn)
    assert any(expected in problem for problem in problems), problems


async def test_an_unrelated_table_is_not_a_difference(
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    await conn.execute("CREATE TABLE my_app_users (id int PRIMARY KEY)")
    assert await migrations.verify(conn) == []


async def test_migrate_refuses_an_edited_migration(
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    await conn.execute(
        "UPDATE jobqueue_migrations SET checksum = 'x' WHERE component = 'jobqueue' AND version = 2"
    )
    with pytest.raises(
        migrations.MigrationError, match=r"0002_.* was changed after it was applied"
    ):
        await migrations.migrate(conn)


def test_render_prints_every_migration_in_order() -> None:
    text = migrations.render(migrations.load_migrations())
    assert text.index("-- 0001_jobs") < text.index("-- 0002_")
    assert "CREATE TABLE jobs" in text


def test_render_prints_plugins_after_the_core() -> None:
    text = migrations.render(migrations.all_migrations())
    assert text.index("-- 0003_finished_jobs_index") < text.index("-- books:0001_books")
    assert "CREATE TABLE books" in text


async def test_a_history_from_before_components_is_adopted(empty_database_url: str) -> None:
    """A database migrated when the books tables were the core's migration 3 keeps them:
    the record moves to the books plugin's version 1, and the core's later ones are applied."""
    conn = await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True)
    async with conn:
        core = migrations.load_migrations()[:2]
        (books,) = migrations.load_migrations("jobqueue_books.sql", "books")
        await conn.execute(
            "CREATE TABLE jobqueue_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, migration in [(1, core[0]), (2, core[1]), (3, books)]:
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO jobqueue_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                [version, migration.name, migration.checksum],
            )
        applied = await migrations.migrate(conn)
        assert [m.label for m in applied] == [
            "0003_finished_jobs_index",
            "0004_job_control",
            "0005_unique_jobs",
            "0006_queue_pause",
            "0007_job_schedules",
            "0008_operating_queues",
            "0009_vacuum_friendly",
            "0010_producer_wake_ups",
            "0011_concurrency_limits",
        ]
        assert await migrations.verify(conn) == []
