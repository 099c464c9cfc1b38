"""Reading and writing the book tables (migration 0003). Every write replaces what the same
job wrote before, in one transaction, so running a job twice leaves the same rows."""

from __future__ import annotations

import collections.abc
import dataclasses
import typing

import psycopg

from jobqueue_books import epub, sql, text

Connection: typing.TypeAlias = psycopg.AsyncConnection[typing.Any]


@dataclasses.dataclass(frozen=True, slots=True)
class StoredChapter:
    index: int
    title: str
    text: str
    summary: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    book_id: str
    book_title: str
    chapter_index: int
    chapter_title: str
    text: str
    score: float


async def save_book(conn: Connection, book_id: str, file_path: str, book: epub.Book) -> None:
    async with conn.transaction():
        await conn.execute(
            sql.query("book_upsert"),
            {
                "id": book_id,
                "file_path": file_path,
                "title": book.title,
                "authors": list(book.authors),
                "language": book.language,
                "identifier": book.identifier,
                "publisher": book.publisher,
                "published": book.date,
                "description": book.description,
                "chapter_count": len(book.chapters),
                "word_count": book.words,
            },
        )
        await conn.execute(sql.query("book_chapters_delete"), {"book_id": book_id})
        async with conn.cursor() as cursor:
            await cursor.executemany(
                sql.query("book_chapter_insert"),
                [
                    {
                        "book_id": book_id,
                        "chapter_index": chapter.index,
                        "title": chapter.title,
                        "text": chapter.text,
                        "word_count": text.word_count(chapter.text),
                    }
                    for chapter in book.chapters
                ],
            )


async def book_exists(conn: Connection, book_id: str) -> bool:
    cursor = await conn.execute(sql.query("book_get"), {"id": book_id})
    return await cursor.fetchone() is not None


async def chapters(conn: Connection, book_id: str) -> list[StoredChapter]:
    cursor = await conn.execute(sql.query("book_chapters_list"), {"book_id": book_id})
    return [StoredChapter(*row) for row in await cursor.fetchall()]


async def save_passages(
    conn: Connection,
    book_id: str,
    embedder: str,
    rows: collections.abc.Sequence[tuple[int, int, str, list[float]]],
) -> None:
    """Replace the book's passages: ``(chapter_index, passage_index, text, vector)`` rows."""
    async with conn.transaction():
        await conn.execute(sql.query("book_passages_delete"), {"book_id": book_id})
        async with conn.cursor() as cursor:
            await cursor.executemany(
                sql.query("book_passage_insert"),
                [
                    {
                        "book_id": book_id,
                        "chapter_index": chapter_index,
                        "passage_index": passage_index,
                        "text": passage,
                        "embedder": embedder,
                        "embedding": vector,
                    }
                    for chapter_index, passage_index, passage, vector in rows
                ],
            )


async def save_summaries(
    conn: Connection, book_id: str, summaries: collections.abc.Mapping[int, str]
) -> None:
    async with conn.transaction(), conn.cursor() as cursor:
        await cursor.executemany(
            sql.query("book_chapter_summary_set"),
            [
                {"book_id": book_id, "chapter_index": index, "summary": summary}
                for index, summary in summaries.items()
            ],
        )


async def similar(
    conn: Connection,
    embedder: str,
    vector: list[float],
    *,
    limit: int = 5,
    book_id: str | None = None,
) -> list[Match]:
    cursor = await conn.execute(
        sql.query("book_passages_similar"),
        {"embedder": embedder, "query": vector, "limit": limit, "book_id": book_id},
    )
    return [
        Match(row[0], row[1], row[2], row[3], row[4], float(row[5]))
        for row in await cursor.fetchall()
    ]


async def library(conn: Connection) -> list[dict[str, typing.Any]]:
    """Every book with its counts and first chapter summary, for listings."""
    cursor = await conn.execute(sql.query("book_list"))
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]
