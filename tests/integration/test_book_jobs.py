"""The three book job types through a real worker and database (S15, issue 4)."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess
import sys
import typing

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import runner
from jobqueue_books import samples

CHAPTERS: typing.Final = [
    (
        "Cats at Home",
        "The cat sleeps on the warm windowsill most of the afternoon. A kitten chases the "
        "ball of wool across the floor.\n\nCats purr when they are content. The old cat "
        "watches the birds outside and twitches its tail.",
    ),
    (
        "Database Transactions",
        "A transaction groups statements so that they commit together or not at all. The "
        "database writes the commit to its log before it answers.\n\nRow locks keep two "
        "transactions from changing the same row at once. Skip locked lets a worker pass "
        "over rows another worker holds.",
    ),
    (
        "Mountain Weather",
        "Clouds gather over the peaks in the early afternoon. Thunderstorms can arrive "
        "quickly and bring hail.\n\nClimbers start before dawn to be off the ridge before "
        "the weather turns. Snow may fall even in summer.",
    ),
]


@pytest.fixture
def book_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return samples.write_epub(
        tmp_path / "mixed.epub",
        title="Three Subjects",
        authors=["Ada Writer", "Bo Coauthor"],
        language="en",
        chapters=CHAPTERS,
        publisher="Jobqueue Tests",
    )


@pytest.fixture(autouse=True)
def book_handlers(registry: runner.Registry) -> None:
    jobqueue.register_all_handlers(registry)


async def all_finished(queue: jobqueue.Queue, expected: int) -> dict[str, int]:
    async def check() -> dict[str, int] | None:
        stats = await queue.get_queue_stats()
        finished = stats["done"] + stats["failed"]
        return stats if finished >= expected and stats["pending"] == stats["running"] == 0 else None

    return await waiting.eventually(check, timeout=60, what=f"{expected} jobs finished")


async def rows(
    conn: psycopg.AsyncConnection[typing.Any], query: str
) -> list[tuple[typing.Any, ...]]:
    cursor = await conn.execute(query)
    return await cursor.fetchall()


async def test_parse_then_embed_and_summarize(
    queue: jobqueue.Queue,
    run_worker: typing.Any,
    book_path: pathlib.Path,
    conn: psycopg.AsyncConnection[typing.Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        parse = await queue.enqueue_job("parseBook", {"bookId": 1, "filePath": str(book_path)})
        run_worker(concurrency=2)
        assert await all_finished(queue, 3) == {
            "pending": 0,
            "running": 0,
            "failed": 0,
            "done": 3,
            "cancelled": 0,
        }
    done = await queue.get_job_status(parse.id)
    assert done is not None
    assert done.result["title"] == "Three Subjects"
    assert done.result["authors"] == ["Ada Writer", "Bo Coauthor"]
    assert done.result["chapters"] == 3
    assert done.result["language"] == "en"
    assert done.result["bookId"] == 1
    assert done.result["words"] > 100
    assert f"[ParseBook] Parsing book 1 from {book_path}" in caplog.messages
    assert "[ParseBook] Book 1 parsed: Three Subjects by Ada Writer, Bo Coauthor, 3 chapters" in (
        caplog.messages
    )
    by_type = await queue.get_queue_stats_by_type()
    assert by_type["embedBook"]["done"] == by_type["summarizeBook"]["done"] == 1
    chapters = await rows(
        conn, "SELECT chapter_index, title, summary FROM book_chapters ORDER BY 1"
    )
    assert [(index, title) for index, title, _ in chapters] == [
        (0, "Cats at Home"),
        (1, "Database Transactions"),
        (2, "Mountain Weather"),
    ]
    assert all(summary for _, _, summary in chapters)
    assert "transaction" in chapters[1][2].lower()
    passages = await rows(
        conn,
        "SELECT count(*), min(array_length(embedding, 1)), min(embedder) FROM book_passages",
    )
    assert passages[0][0] >= 3
    assert passages[0][1:] == (512, "use-multilingual-v3")  # the default embedder


async def test_running_each_job_twice_leaves_the_same_rows(
    queue: jobqueue.Queue,
    run_worker: typing.Any,
    book_path: pathlib.Path,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    snapshot = (
        "SELECT (SELECT json_agg(b.* ORDER BY id)::text FROM (SELECT id, title, authors,"
        " chapter_count, word_count FROM books) b),"
        " (SELECT json_agg(c.* ORDER BY book_id, chapter_index)::text FROM (SELECT book_id,"
        " chapter_index, title, text, summary FROM book_chapters) c),"
        " (SELECT json_agg(p.* ORDER BY book_id, chapter_index, passage_index)::text FROM"
        " (SELECT book_id, chapter_index, passage_index, text, embedding FROM book_passages) p)"
    )
    payload = {"bookId": "b-7", "filePath": str(book_path)}
    await queue.enqueue_job("parseBook", payload)
    run_worker(concurrency=3)
    await all_finished(queue, 3)
    first = await rows(conn, snapshot)
    await queue.enqueue_job("parseBook", payload)
    await queue.enqueue_job("embedBook", {"bookId": "b-7"})
    await queue.enqueue_job("summarizeBook", {"bookId": "b-7"})
    await all_finished(queue, 8)
    assert await rows(conn, snapshot) == first
    assert first[0][2] is not None


async def test_summarize_one_chapter(
    queue: jobqueue.Queue,
    run_worker: typing.Any,
    book_path: pathlib.Path,
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    await queue.enqueue_job("parseBook", {"bookId": 3, "filePath": str(book_path)})
    run_worker()
    await all_finished(queue, 3)
    await conn.execute("UPDATE book_chapters SET summary = NULL")
    one = await queue.enqueue_job("summarizeBook", {"bookId": 3, "chapterIndex": 2})
    bad = await queue.enqueue_job("summarizeBook", {"bookId": 3, "chapterIndex": 3})
    await all_finished(queue, 5)
    result = await queue.get_job_status(one.id)
    assert result is not None
    assert [entry["title"] for entry in result.result["summaries"]] == ["Mountain Weather"]
    summaries = await rows(
        conn, "SELECT chapter_index FROM book_chapters WHERE summary IS NOT NULL"
    )
    assert summaries == [(2,)]
    failed = await queue.get_job_status(bad.id)
    assert failed is not None
    assert failed.status == "failed"
    assert failed.error == (
        "invalid payload: PayloadError: chapterIndex 3 is out of range: book '3' has 3 chapters"
        " (0 to 2)"
    )


@pytest.mark.parametrize(
    ("job_type", "payload", "error"),
    [
        ("embedBook", {"bookId": 99}, "no book with id '99': run parseBook for it first"),
        ("summarizeBook", {"bookId": 99}, "no book with id '99': run parseBook for it first"),
        ("embedBook", {"book": 1}, "bookId must be a number or a non-empty string, not None"),
        ("parseBook", {"bookId": 1}, "filePath must be a non-empty string"),
        ("summarizeBook", {"bookId": 1, "chapterIndex": "2"}, "chapterIndex must be a whole"),
        ("parseBook", {"bookId": 1, "filePath": "/no/such/book.epub"}, "no such file"),
    ],
)
async def test_bad_payloads_fail_at_once_with_a_clear_error(
    queue: jobqueue.Queue,
    run_worker: typing.Any,
    job_type: str,
    payload: dict[str, typing.Any],
    error: str,
) -> None:
    job = await queue.enqueue_job(job_type, payload)
    run_worker()
    await all_finished(queue, 1)
    failed = await queue.get_job_status(job.id)
    assert failed is not None
    assert failed.status == "failed"
    assert failed.attempts == 1
    assert failed.error is not None
    assert error in failed.error


async def test_a_hostile_file_fails_its_job_and_the_worker_goes_on(
    queue: jobqueue.Queue, run_worker: typing.Any, book_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    junk = tmp_path / "junk.epub"
    junk.write_bytes(b"this is not a zip archive at all")
    bad = await queue.enqueue_job("parseBook", {"bookId": 1, "filePath": str(junk)})
    good = await queue.enqueue_job("parseBook", {"bookId": 2, "filePath": str(book_path)})
    run_worker(concurrency=1)
    await all_finished(queue, 4)
    failed = await queue.get_job_status(bad.id)
    assert failed is not None
    assert failed.status == "failed"
    assert failed.error is not None
    assert "not an EPUB" in failed.error
    done = await queue.get_job_status(good.id)
    assert done is not None
    assert done.status == "done"


async def test_books_dir_confines_file_paths(
    queue: jobqueue.Queue,
    run_worker: typing.Any,
    book_path: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    books_dir = tmp_path / "library"
    books_dir.mkdir()
    (books_dir / "inside.epub").write_bytes(book_path.read_bytes())
    monkeypatch.setenv("JOBQUEUE_BOOKS_DIR", str(books_dir))
    inside = await queue.enqueue_job("parseBook", {"bookId": 1, "filePath": "inside.epub"})
    outside = await queue.enqueue_job("parseBook", {"bookId": 2, "filePath": "../mixed.epub"})
    absolute = await queue.enqueue_job("parseBook", {"bookId": 3, "filePath": str(book_path)})
    run_worker()
    await all_finished(queue, 5)
    statuses = {}
    for job in (inside, outside, absolute):
        found = await queue.get_job_status(job.id)
        assert found is not None
        statuses[job.payload["bookId"]] = (found.status, found.error or "")
    assert statuses[1][0] == "done"
    for refused in (2, 3):
        assert statuses[refused][0] == "failed"
        assert "outside the books directory" in statuses[refused][1]


async def test_books_commands_find_the_closest_passages(
    queue: jobqueue.Queue, run_worker: typing.Any, book_path: pathlib.Path, database_url: str
) -> None:
    await queue.enqueue_job("parseBook", {"bookId": 5, "filePath": str(book_path)})
    run_worker(concurrency=2)
    await all_finished(queue, 3)
    env = {**os.environ, "DATABASE_URL": database_url}
    jobqueue_command = str(pathlib.Path(sys.executable).with_name("jobqueue"))

    def books(*args: str) -> str:
        done = subprocess.run(
            [jobqueue_command, "--log-level", "warning", "books", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listing = books("list")
    assert listing.startswith("5: Three Subjects by Ada Writer, Bo Coauthor (en, 3 chapters,")
    for query, chapter in [
        ("database transactions commit and row locks", "Database Transactions"),
        ("thunderstorms and snow over the mountain peaks", "Mountain Weather"),
        ("the kitten and the cat purr", "Cats at Home"),
    ]:
        matches = json.loads(books("similar", query, "--json", "--limit", "2"))
        assert matches[0]["chapterTitle"] == chapter, (query, matches)
        assert matches[0]["bookId"] == "5"
        assert matches[0]["score"] >= matches[1]["score"]
    assert "Three Subjects / " in books("similar", "weather", "--book", "5")
