"""The pure parts of the operator's handlers: conditions, back-off, and which errors count as
the database's. The handlers themselves run against the real control plane in
``tests/e2e/test_operator.py``."""

from __future__ import annotations

import kopf
import psycopg
import psycopg.errors
import pytest

import jobqueue
from jobqueue_operator import handlers


def body(conditions: list[dict[str, object]]) -> kopf.Body:
    return kopf.Body({"metadata": {"generation": 3}, "status": {"conditions": conditions}})


def test_a_condition_keeps_its_transition_time_while_its_status_stays() -> None:
    before = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Scaling", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ]
    wanted = {
        "Ready": ("True", "Reconciled", "2 of 2 workers ready"),
        "Scaling": ("True", "ScaledUp", "0 -> 2 replicas"),
        "DatabaseReachable": ("True", "Connected", "queue 'default' observed"),
    }
    conditions = {c["type"]: c for c in handlers._conditions(body(before), wanted, 3)}
    assert conditions["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert conditions["Scaling"]["lastTransitionTime"] != "2026-01-01T00:00:00Z"
    assert conditions["Scaling"]["reason"] == "ScaledUp"
    assert conditions["DatabaseReachable"]["observedGeneration"] == 3
    assert conditions["DatabaseReachable"]["lastTransitionTime"]


def test_the_backoff_doubles_from_the_poll_interval_to_a_bound() -> None:
    assert handlers._backoff(1.0, 0) == 1.0
    assert [handlers._backoff(1.0, n) for n in range(1, 7)] == [1, 2, 4, 8, 15, 15]
    # A poll interval longer than the bound is never shortened.
    assert handlers._backoff(60.0, 3) == 60.0


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.DataError("invalid input syntax for type integer"),
        psycopg.errors.NumericValueOutOfRange("integer out of range"),
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.ProgrammingError("syntax error at or near SELEC"),
        KeyError("scaling"),
    ],
)
def test_a_bug_or_bad_data_is_not_reported_as_the_database_unreachable(error: Exception) -> None:
    assert handlers.database_trouble(error) is None
    with pytest.raises(type(error)), handlers.database_calls():
        raise error


@pytest.mark.parametrize(
    ("error", "reason", "says"),
    [
        (
            psycopg.OperationalError("connection failed: Connection refused"),
            "DatabaseUnreachable",
            "cannot reach the database: connection failed",
        ),
        (ConnectionResetError("reset by peer"), "DatabaseUnreachable", "cannot reach the database"),
        (
            psycopg.errors.InvalidPassword("password authentication failed"),
            "DatabaseUnreachable",
            "permanent",
        ),
        (
            psycopg.ProgrammingError('missing "=" after "garbage" in connection info string'),
            "DatabaseUnreachable",
            "permanent",
        ),
        (
            jobqueue.ConfigurationError("no database configured"),
            "DatabaseUnreachable",
            "no database",
        ),
        (jobqueue.MigrationError("the database has migration 0099"), "MigrationFailed", "0099"),
    ],
)
def test_the_databases_errors_become_the_conditions_reason(
    error: Exception, reason: str, says: str
) -> None:
    trouble = handlers.database_trouble(error)
    assert trouble is not None
    assert trouble.reason == reason
    assert says in trouble.message
    with pytest.raises(handlers.Unavailable) as raised, handlers.database_calls():
        raise error
    assert raised.value.reason == reason
