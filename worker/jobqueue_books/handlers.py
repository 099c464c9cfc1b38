"""The seed's three job types (S15), doing real work.

- ``parseBook {bookId, filePath}``: reads the EPUB (hostile input: see ``books.epub``),
  stores the book and its chapters, and completes with ``embedBook`` and ``summarizeBook``
  follow-ups in the same transaction.
- ``embedBook {bookId}``: splits chapters into passages and stores their embeddings.
- ``summarizeBook {bookId, chapterIndex?}``: extractive summaries of one or all chapters.

Each replaces its own earlier output, so a job delivered twice leaves the same rows.
CPU-bound work (parsing, embedding, summarising) runs in a thread; database work on the
worker's pool, which each job brings (``job.pool``).
"""

from __future__ import annotations

import asyncio
import logging
import typing

from jobqueue import runner, statements, types
from jobqueue_books import embedding, epub, store, text
from jobqueue_books import settings as books_settings

logger = logging.getLogger("jobqueue.handlers.books")

EMBED_BATCH: typing.Final = 256


def book_id_of(payload: typing.Any) -> str:
    """The payload's ``bookId`` (a number or a non-empty string), as stored."""
    if not isinstance(payload, dict):
        raise runner.PayloadError("payload must be an object with a bookId")
    value = payload.get("bookId")
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise runner.PayloadError(f"bookId must be a number or a non-empty string, not {value!r}")
    if isinstance(value, str) and len(value) > 200:
        raise runner.PayloadError("bookId is longer than 200 characters")
    return str(value)


def _by(authors: typing.Sequence[str]) -> str:
    return ", ".join(authors) if authors else "unknown author"


class ParseBookHandler(runner.Handler):
    type = "parseBook"

    def validate_payload(self, payload: typing.Any) -> typing.Any:
        book_id_of(payload)
        file_path = payload.get("filePath")
        if not isinstance(file_path, str) or not file_path:
            raise runner.PayloadError("filePath must be a non-empty string")
        return payload

    async def handle(
        self, payload: dict[str, typing.Any], job: runner.RunningJob
    ) -> runner.Completion:
        book_id = book_id_of(payload)
        file_path = payload["filePath"]
        logger.info("[ParseBook] Parsing book %s from %s", book_id, file_path)
        try:
            path = epub.resolve_book_path(file_path, books_settings.BOOKS_DIR.from_env() or None)
            book = await asyncio.to_thread(epub.read_epub, path)
        except epub.EpubError as error:
            # The same file would fail the same way: no retries.
            raise runner.PayloadError(str(error)) from error
        async with job.pool.connection() as conn:
            await store.save_book(conn, book_id, str(path), book)
        logger.info(
            "[ParseBook] Book %s parsed: %s by %s, %d chapters",
            book_id,
            book.title,
            _by(book.authors),
            len(book.chapters),
        )
        result = {
            "bookId": payload["bookId"],
            "title": book.title,
            "authors": list(book.authors),
            "language": book.language,
            "identifier": book.identifier,
            "publisher": book.publisher,
            "date": book.date,
            "chapters": len(book.chapters),
            "words": book.words,
        }
        follow_ups = [
            types.NewJob(job_type, {"bookId": payload["bookId"]}, queue=job.queue)
            for job_type in ("embedBook", "summarizeBook")
        ]
        return runner.Completion(result, enqueue=follow_ups)


async def _chapters_of(pool: statements.Pool, book_id: str) -> list[store.StoredChapter]:
    async with pool.connection() as conn:
        if not await store.book_exists(conn, book_id):
            raise runner.PayloadError(f"no book with id {book_id!r}: run parseBook for it first")
        return await store.chapters(conn, book_id)


def _embed_chapters(
    chapters: list[store.StoredChapter], embedder: embedding.Embedder
) -> list[tuple[int, int, str, list[float]]]:
    pieces = [
        (chapter.index, number, passage)
        for chapter in chapters
        for number, passage in enumerate(text.passages(chapter.text))
    ]
    vectors: list[list[float]] = []
    for start in range(0, len(pieces), EMBED_BATCH):
        vectors += embedder.embed(
            [passage for _, _, passage in pieces[start : start + EMBED_BATCH]]
        )
    return [(*piece, vector) for piece, vector in zip(pieces, vectors, strict=True)]


class EmbedBookHandler(runner.Handler):
    type = "embedBook"

    def validate_payload(self, payload: typing.Any) -> typing.Any:
        book_id_of(payload)
        return payload

    async def handle(
        self, payload: dict[str, typing.Any], job: runner.RunningJob
    ) -> dict[str, typing.Any]:
        book_id = book_id_of(payload)
        chapters = await _chapters_of(job.pool, book_id)
        embedder = await asyncio.to_thread(embedding.load_embedder)
        rows = await asyncio.to_thread(_embed_chapters, chapters, embedder)
        async with job.pool.connection() as conn:
            await store.save_passages(conn, book_id, embedder.name, rows)
        logger.info(
            "[EmbedBook] Book %s: %d passages embedded with %s", book_id, len(rows), embedder.name
        )
        return {
            "bookId": payload["bookId"],
            "passages": len(rows),
            "embedder": embedder.name,
            "dimensions": len(rows[0][3]) if rows else 0,
        }


def _summaries(chapters: list[store.StoredChapter], wanted: list[int]) -> dict[int, str]:
    texts = [chapter.text for chapter in chapters]
    return {
        index: text.summarize(texts[index], texts[:index] + texts[index + 1 :]) for index in wanted
    }


class SummarizeBookHandler(runner.Handler):
    type = "summarizeBook"

    def validate_payload(self, payload: typing.Any) -> typing.Any:
        book_id_of(payload)
        index = payload.get("chapterIndex")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise runner.PayloadError(f"chapterIndex must be a whole number, not {index!r}")
        return payload

    async def handle(
        self, payload: dict[str, typing.Any], job: runner.RunningJob
    ) -> dict[str, typing.Any]:
        book_id = book_id_of(payload)
        chapters = await _chapters_of(job.pool, book_id)
        index = payload.get("chapterIndex")
        if index is not None and not 0 <= index < len(chapters):
            raise runner.PayloadError(
                f"chapterIndex {index} is out of range: book {book_id!r} has"
                f" {len(chapters)} chapters (0 to {len(chapters) - 1})"
            )
        wanted = [index] if index is not None else [chapter.index for chapter in chapters]
        summaries = await asyncio.to_thread(_summaries, chapters, wanted)
        async with job.pool.connection() as conn:
            await store.save_summaries(conn, book_id, summaries)
        logger.info("[SummarizeBook] Book %s: %d chapters summarized", book_id, len(summaries))
        return {
            "bookId": payload["bookId"],
            "summaries": [
                {"chapterIndex": i, "title": chapters[i].title, "summary": summaries[i]}
                for i in wanted
            ],
        }


def register(registry: runner.Registry) -> None:
    """The plugin's entry point (group ``jobqueue.handlers``): the three book handlers."""
    for handler in (ParseBookHandler(), EmbedBookHandler(), SummarizeBookHandler()):
        registry.register(handler, source="plugin books")
