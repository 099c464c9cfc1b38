"""The ``jobqueue`` command under bad input and a misbehaving database (issue 7): one clear
line, never a traceback, and nothing written by a command that reports an error."""

from __future__ import annotations

import os
import pathlib
import subprocess
import uuid

import psycopg
import pytest
from test_cli import JOBQUEUE, run

import jobqueue


def jobs_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
    assert row is not None
    return int(row[0])


def assert_one_clear_line(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode != 0
    assert text in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-at", "9999-12-31T23:00:00-12:00"], "is out of range"),
        (["--run-at", "0001-01-01T00:00:00+05:00"], "is out of range"),
        (["--payload", "[" * 980 + "]" * 980], "more than 200 levels deep"),
        (["--payload", "[" * 300 + "]" * 300], "nests more than 200 levels deep"),
        (["--payload", '{"x": 1e5000}'], "not valid JSON"),
    ],
)
def test_enqueue_refuses_what_a_worker_could_not_run(
    database_url: str, args: list[str], message: str
) -> None:
    assert_one_clear_line(
        run("enqueue", "t", *args, database_url=database_url, check=False), message
    )
    assert jobs_count(database_url) == 0


@pytest.mark.parametrize("name", ["line\n[Worker] forged", "nul\x00byte"])
def test_control_characters_in_names_are_refused_before_the_database(
    database_url: str, name: str
) -> None:
    with jobqueue.SyncQueue(database_url) as queue, pytest.raises(ValueError, match="control"):
        queue.enqueue_job(name)
    assert jobs_count(database_url) == 0


def test_payload_from_a_file_or_standard_input(database_url: str, tmp_path: pathlib.Path) -> None:
    big = {"text": "x" * 300_000}  # beyond what an argument list carries
    path = tmp_path / "payload.json"
    path.write_text(__import__("json").dumps(big))
    from_file = run("enqueue", "t", "--payload-file", str(path), database_url=database_url)
    from_stdin = subprocess.run(
        [JOBQUEUE, "enqueue", "t", "--payload-file", "-", "--database-url", database_url],
        input='{"from": "stdin"}',
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    with jobqueue.SyncQueue(database_url) as queue:
        first = queue.get_job_status(from_file.stdout.strip())
        second = queue.get_job_status(from_stdin.stdout.strip())
    assert first is not None
    assert first.payload == big
    assert second is not None
    assert second.payload == {"from": "stdin"}
    missing = run(
        "enqueue",
        "t",
        "--payload-file",
        str(tmp_path / "nope"),
        database_url=database_url,
        check=False,
    )
    assert_one_clear_line(missing, "cannot read the payload from")


def test_status_of_a_poisoned_job_is_readable(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "INSERT INTO jobs (type, payload, run_at) VALUES"
            " ('t', (repeat('[', 980) || repeat(']', 980))::jsonb, '10000-01-01 00:00+00')"
            " RETURNING id"
        ).fetchone()
    assert row is not None
    shown = run("status", str(row[0]), database_url=database_url)
    assert "<undecodable JSON (nested more than 200 levels deep)" in shown.stdout
    assert "9999-12-31" in shown.stdout


def test_a_statement_timeout_is_not_called_unreachable(database_url: str) -> None:
    timed = psycopg.conninfo.make_conninfo(database_url, options="-c statement_timeout=300")
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE job_counts IN ACCESS EXCLUSIVE MODE")
        done = run("stats", database_url=timed, check=False)
    assert_one_clear_line(done, "statement cancelled (statement_timeout")
    assert "cannot reach" not in done.stderr


def test_migrate_reports_a_dropped_table_instead_of_up_to_date(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE jobs CASCADE")  # with what depends on it
    done = run("db", "migrate", database_url=database_url, check=False)
    assert_one_clear_line(done, "the schema is damaged: jobs missing")


def test_verify_needs_no_create_right(database_url: str) -> None:
    role = f"verifier_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"REVOKE CREATE ON DATABASE {conn.info.dbname} FROM PUBLIC")
    try:
        url = psycopg.conninfo.make_conninfo(database_url, user=role)
        done = run("db", "verify", database_url=url, check=False)
        assert done.returncode == 0, done.stderr
        assert "matches the migrations" in done.stdout
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user": "no_such_role"}, 'role "no_such_role" does not exist (permanent'),
        ({"sslmode": "bogus"}, "invalid sslmode value"),
        ({"host": "no-such-host.invalid"}, "failed to resolve host"),
    ],
)
def test_a_worker_with_a_configuration_that_cannot_work_says_so_and_exits(
    database_url: str, change: dict[str, str], message: str
) -> None:
    url = psycopg.conninfo.make_conninfo(database_url, **change)
    done = subprocess.run(
        [JOBQUEUE, "worker", "--import", "jobqueue_test_handlers", "--database-url", url],
        env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[1] / "support")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_clear_line(done, message)
    assert "permanent" in done.stderr


def test_a_threshold_beyond_any_date_is_refused(database_url: str) -> None:
    done = run(
        "cleanup-stale-locks", "--threshold", "9999999d", database_url=database_url, check=False
    )
    assert_one_clear_line(done, "stale_threshold is 8.64e+11 s, above the most allowed")
