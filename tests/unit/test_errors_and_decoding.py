"""How database errors are sorted, and decoding that survives what the database holds."""

from __future__ import annotations

import datetime

import psycopg
import psycopg.errors
import pytest

from jobqueue import checks, db, types
from jobqueue import worker as worker_module


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (psycopg.errors.ReadOnlySqlTransaction("read-only"), db.ErrorKind.TRANSIENT),
        (psycopg.errors.AdminShutdown("terminating"), db.ErrorKind.TRANSIENT),
        (psycopg.errors.QueryCanceled("statement timeout"), db.ErrorKind.TRANSIENT),
        (psycopg.errors.SerializationFailure("conflict"), db.ErrorKind.TRANSIENT),
        (psycopg.errors.TooManyConnections("too many"), db.ErrorKind.TRANSIENT),
        (psycopg.OperationalError("connection failed: Connection refused"), db.ErrorKind.TRANSIENT),
        (psycopg.InterfaceError("the connection is closed"), db.ErrorKind.TRANSIENT),
        (ConnectionResetError(), db.ErrorKind.TRANSIENT),
        (TimeoutError(), db.ErrorKind.TRANSIENT),
        (psycopg.errors.InvalidPassword("bad password"), db.ErrorKind.PERMANENT),
        (psycopg.errors.InsufficientPrivilege("denied"), db.ErrorKind.PERMANENT),
        (psycopg.errors.UndefinedTable('relation "jobs" does not exist'), db.ErrorKind.PERMANENT),
        (
            psycopg.OperationalError('connection failed: FATAL:  role "x" does not exist'),
            db.ErrorKind.PERMANENT,
        ),
        (
            psycopg.OperationalError('connection is bad: invalid sslmode value: "x"'),
            db.ErrorKind.PERMANENT,
        ),
        (
            psycopg.OperationalError("failed to resolve host 'db': Name or service not known"),
            db.ErrorKind.PERMANENT,
        ),
        (
            psycopg.ProgrammingError('missing "=" after "garbage" in connection info string'),
            db.ErrorKind.PERMANENT,
        ),
        (psycopg.ProgrammingError("syntax error at or near SELEC"), None),
        (psycopg.errors.RaiseException("a trigger said no"), None),
        (psycopg.errors.NumericValueOutOfRange("out of range"), None),
        (psycopg.errors.UniqueViolation("duplicate"), None),
        (ValueError("a bug"), None),
    ],
)
def test_errors_are_sorted_by_whether_they_pass(
    error: BaseException, kind: db.ErrorKind | None
) -> None:
    assert db.classify_error(error) is kind


def test_descriptions_name_the_kind() -> None:
    timeout = db.describe_database_error(psycopg.errors.QueryCanceled("canceling statement"))
    assert timeout.startswith("statement cancelled (statement_timeout")
    role = db.describe_database_error(psycopg.OperationalError('FATAL:  role "x" does not exist'))
    assert "permanent" in role
    assert db.describe_database_error(OSError("refused")).startswith("cannot reach the database")


@pytest.mark.parametrize(
    "text",
    [b"[" * 5000 + b"]" * 5000, b'{"x": 1' + b"0" * 5000 + b"}"],
)
def test_undecodable_json_becomes_a_marker(text: bytes) -> None:
    value = db.load_json(text)
    assert isinstance(value, types.Undecodable)
    assert str(value).startswith("<undecodable JSON (")
    assert db.load_json(b'{"fine": [1, 2]}') == {"fine": [1, 2]}


def test_json_deeper_than_the_limit_is_undecodable_on_any_stack() -> None:
    """json.loads could build this (it is well under the recursion limit here), and would
    or would not by the depth of the stack it is called from; the queue's limit decides."""
    deep = b"[" * (types.MAX_JSON_DEPTH + 1) + b"]" * (types.MAX_JSON_DEPTH + 1)
    value = db.load_json(deep)
    assert isinstance(value, types.Undecodable)
    assert value.reason == f"nested more than {types.MAX_JSON_DEPTH} levels deep"
    at_limit = b"[" * types.MAX_JSON_DEPTH + b"]" * types.MAX_JSON_DEPTH
    assert not isinstance(db.load_json(at_limit), types.Undecodable)
    assert not isinstance(db.load_json(memoryview(at_limit)), types.Undecodable)


@pytest.mark.parametrize("name", ["a\nb", "a\x00b", "tab\there", "\x7f"])
def test_names_with_control_characters_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        checks.check_name(name, "job type")


@pytest.mark.parametrize(
    "moment",
    [
        datetime.datetime(
            9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=12))
        ),
        datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(1, 1, 1, 3, tzinfo=datetime.timezone(datetime.timedelta(hours=5))),
    ],
)
def test_times_outside_what_both_sides_hold_are_refused(moment: datetime.datetime) -> None:
    with pytest.raises(ValueError, match="out of range"):
        checks.check_run_at(moment)


def test_depth_is_measured_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert types.json_depth_exceeds(deep, 200)
    assert not types.json_depth_exceeds({"a": [{"b": 1}]}, 3)
    assert types.json_depth_exceeds({"a": [{"b": [1]}]}, 3)


def test_the_lease_must_hold_several_heartbeats() -> None:
    with pytest.raises(ValueError, match="at least 6 times heartbeat_interval"):
        worker_module.WorkerConfig(heartbeat_interval=15, stale_threshold=60)
    assert worker_module.WorkerConfig(heartbeat_interval=10, stale_threshold=60).lease == 30
