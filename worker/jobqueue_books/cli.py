"""The book pipeline's commands, added to ``jobqueue`` through the ``jobqueue.commands``
entry point: ``jobqueue books list|similar`` and ``jobqueue demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import textwrap
import typing

from jobqueue import cli, db

if typing.TYPE_CHECKING:
    from jobqueue_books import store


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    books_parser = commands.add_parser(
        "books", help="the books the book jobs have read", parents=[common]
    )
    books_commands = books_parser.add_subparsers(
        dest="books_command", required=True, metavar="ACTION"
    )
    books_parser.set_defaults(run=run_books)
    books_commands.add_parser("list", help="every parsed book", parents=[common])
    similar = books_commands.add_parser(
        "similar", help="passages closest in meaning to a text", parents=[common]
    )
    similar.add_argument("text", help="what to look for")
    similar.add_argument("--limit", type=cli.positive_int, default=5, help="how many (default 5)")
    similar.add_argument("--book", metavar="ID", help="only this book")
    similar.add_argument("--json", action="store_true", help="print JSON")

    demo = commands.add_parser(
        "demo",
        help="the book pipeline end to end on an embedded PostgreSQL (or $DATABASE_URL)",
        parents=[common],
    )
    demo.add_argument(
        "epubs", nargs="*", metavar="EPUB", help="books to run through (default: samples)"
    )
    demo.add_argument(
        "--show-logs", action="store_true", help="show the worker's log lines as well"
    )
    demo.set_defaults(run=run_demo)


async def run_demo(args: argparse.Namespace) -> int:
    from jobqueue_books import demo  # the demo's imports are only for the demo

    return await demo.run(args.database_url, args.epubs, show_logs=args.show_logs)


async def run_books(args: argparse.Namespace) -> int:
    # Imported here: every `jobqueue` command builds this plugin's parser, and a worker
    # should not carry the EPUB reader and lxml for it.
    from jobqueue_books import embedding, store

    conn = await db.connect(args.database_url)
    async with conn:
        if args.books_command == "list":
            for book in await store.library(conn):
                print(
                    f"{book['id']}: {book['title']} by {', '.join(book['authors']) or '?'}"
                    f" ({book['language'] or '?'}, {book['chapter_count']} chapters,"
                    f" {book['word_count']} words, {book['passages']} passages)"
                )
            return 0
        embedder = await asyncio.to_thread(embedding.load_embedder)
        (vector,) = await asyncio.to_thread(embedding.embed_queries, embedder, [args.text])
        matches = await store.similar(
            conn, embedder.name, vector, limit=args.limit, book_id=args.book
        )
    if args.json:
        print(json.dumps([_match_json(match) for match in matches], ensure_ascii=False, indent=2))
        return 0
    if not matches:
        print("no passages yet: run embedBook jobs first")
    for match in matches:
        print(f"{match.score:.3f}  {match.book_title} / {match.chapter_title}")
        print(f"       {textwrap.shorten(match.text, 160)}")
    return 0


def _match_json(match: store.Match) -> dict[str, typing.Any]:
    return {
        "bookId": match.book_id,
        "bookTitle": match.book_title,
        "chapterIndex": match.chapter_index,
        "chapterTitle": match.chapter_title,
        "text": match.text,
        "score": round(match.score, 6),
    }
