"""The named-query file: well-formed, and every query used by the code exists (and back)."""

from __future__ import annotations

import pathlib
import re

import pytest

from jobqueue import sql
from jobqueue_books import sql as books_sql

# The queries of every named-query file: the core's and the books plugin's.
ALL_QUERIES = {*sql.QUERIES, *books_sql.query.queries}

SOURCE_ROOTS = [
    pathlib.Path(__file__).parents[2] / "worker",
    pathlib.Path(__file__).parents[2] / "operator",
]


def test_parse_named_queries_splits_blocks() -> None:
    text = "-- header\n-- name: a_one\nSELECT 1;\n\n-- name: b_two\n-- a comment\nSELECT 2;\n"
    assert sql.parse_named_queries(text) == {
        "a_one": "SELECT 1;",
        "b_two": "-- a comment\nSELECT 2;",
    }


def test_a_repeated_or_empty_query_is_an_error() -> None:
    with pytest.raises(ValueError, match="'a' is defined twice"):
        sql.parse_named_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="'a' is empty"):
        sql.parse_named_queries("-- name: a\n-- name: b\nSELECT 2;\n")


def test_unknown_query_names_itself() -> None:
    with pytest.raises(KeyError, match="no query named 'nope'"):
        sql.query("nope")


def test_code_and_query_file_agree() -> None:
    sources = [path.read_text() for root in SOURCE_ROOTS for path in root.rglob("*.py")]
    asked = {name for text in sources for name in re.findall(r'sql\.query\(\s*"(\w+)"', text)}
    assert asked - ALL_QUERIES == set(), "code asks for queries the files lack"
    # Queue passes query names to its helpers (_jobs("job_claim", ...)): any string literal
    # naming a query counts as a use.
    literals = {name for text in sources for name in re.findall(r'"(\w+)"', text)}
    assert ALL_QUERIES - literals == set(), "a queries.sql has queries no code uses"


def test_queries_are_named_entity_first() -> None:
    entities = (
        "job_", "queue_", "schedule_", "migration_", "schema_", "connection_", "book_",
        "advisory_lock_", "worker_", "audit_", "database_",
    )  # fmt: skip
    assert [name for name in ALL_QUERIES if not name.startswith(entities)] == []


def test_a_plugin_query_name_is_not_a_core_one() -> None:
    assert set(sql.QUERIES) & set(books_sql.query.queries) == set()
