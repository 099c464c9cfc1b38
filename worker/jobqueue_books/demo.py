"""``jobqueue demo``: the book pipeline end to end, on an embedded PostgreSQL (or
``$DATABASE_URL``).

It migrates, writes a few sample EPUBs (prose from the documentation that ships with
Python, plus short Russian, Chinese and Japanese books of our own) or takes the EPUB paths it is
given, enqueues a ``parseBook`` job for each, and runs a worker in this process until the
``embedBook`` and ``summarizeBook`` follow-ups are done. It shows progress while it works,
then a table per book, a similarity search over the passages, and the queue statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import sys
import tempfile
import time
import typing
import unicodedata

from jobqueue import db, embedded, migrations, plugins, runner, types, worker
from jobqueue import queue as queue_module
from jobqueue import settings as core_settings
from jobqueue_books import embedding, samples, store

DEMO_WORKER: typing.Final = "demo-worker"
DEMO_QUERY: typing.Final = "what happens when an exception is raised"
STEPS_PER_BOOK: typing.Final = 3  # parseBook, then embedBook and summarizeBook


def _bar(done: int, total: int, started: float, width: int = 30) -> str:
    filled = round(width * done / total) if total else width
    elapsed = time.monotonic() - started
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} jobs  {elapsed:4.1f}s"


async def _show_progress(
    queue: queue_module.Queue, total: int, running: asyncio.Task[None]
) -> None:
    """A progress bar on a terminal, a line now and then elsewhere, until the worker ends."""
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    last_printed = -1
    while True:
        stats = await queue.get_queue_stats()
        finished = stats["done"] + stats["failed"]
        if interactive:
            print("\r" + _bar(finished, total, started), end="", flush=True)
        elif finished != last_printed:
            print(_bar(finished, total, started), flush=True)
            last_printed = finished
        if running.done():
            break
        # A display refresh, not synchronisation: the loop ends when the worker does.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(running), timeout=0.2)
    if interactive:
        print()


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _fit(value: str | None, width: int, *, pad: bool = False) -> str:
    """``value`` on one line in at most ``width`` columns, cut with "…" (any script)."""
    text = " ".join((value or "-").split())
    if _width(text) > width:
        while _width(text) > width - 1:
            text = text[:-1]
        text = text.rstrip() + "…"
    return text + " " * (width - _width(text)) if pad else text


async def _report(
    database_url: str, parse_jobs: list[types.Job], queue: queue_module.Queue
) -> None:
    conn = await db.connect(database_url)
    async with conn:
        books = {str(book["id"]): book for book in await store.library(conn)}
        print(
            f"\n{'BOOK':<5} {'TITLE':<38} {'AUTHORS':<24} {'LANG':<5} {'CHAPTERS':>8} {'WORDS':>7}"
        )
        for job in parse_jobs:
            final = await queue.get_job_status(job.id)
            assert final is not None
            book_id = str(job.payload["bookId"])
            book = books.get(book_id)
            if final.status != "done" or book is None:
                print(f"{book_id:<5} {final.status}: {final.error}")
                continue
            columns = [
                _fit(book_id, 5, pad=True),
                _fit(book["title"], 38, pad=True),
                _fit(", ".join(book["authors"]), 24, pad=True),
                _fit(book["language"], 5, pad=True),
                f"{book['chapter_count']:>8} {book['word_count']:>7}",
            ]
            print(" ".join(columns))
            print(f"      summary: {_fit(book['first_summary'], 90)}")
        embedder = await asyncio.to_thread(embedding.load_embedder)
        (vector,) = await asyncio.to_thread(embedding.embed_queries, embedder, [DEMO_QUERY])
        matches = await store.similar(conn, embedder.name, vector, limit=3)
    print(f'\nclosest passages to "{DEMO_QUERY}" ({embedder.name}):')
    for match in matches:
        where = f"{_fit(match.book_title, 40)} / {_fit(match.chapter_title, 30)}"
        print(f"  {match.score:.3f}  {where}")
        print(f"         {_fit(match.text, 100)}")
    print(f"\nqueue stats: {await queue.get_queue_stats()}")
    for name, counts in (await queue.get_queue_stats_by_type()).items():
        print(f"  {name:<14} " + "  ".join(f"{status} {count}" for status, count in counts.items()))


async def _run_on(database_url: str, epub_paths: list[pathlib.Path], show_logs: bool) -> int:
    conn = await db.connect(database_url)
    async with conn:
        await migrations.migrate(conn)
    registry = runner.Registry()
    plugins.register_all_handlers(registry)
    async with queue_module.Queue(database_url) as queue:
        parse_jobs = await queue.enqueue_jobs(
            types.NewJob("parseBook", {"bookId": number, "filePath": str(path)})
            for number, path in enumerate(epub_paths, start=1)
        )
        print(f"enqueued {len(parse_jobs)} parseBook jobs; running a worker (concurrency 4)")
        if not show_logs:
            logging.getLogger("jobqueue").setLevel(logging.WARNING)
        config = worker.WorkerConfig(concurrency=4, burst=True, worker_id=DEMO_WORKER)
        demo_worker = worker.make_worker(config, database_url=database_url, registry=registry)
        running = asyncio.create_task(worker.serve(demo_worker))
        await _show_progress(queue, STEPS_PER_BOOK * len(parse_jobs), running)
        await running
        await _report(database_url, parse_jobs, queue)
    return 0


def _absolute(paths: typing.Sequence[str]) -> list[pathlib.Path]:
    return [pathlib.Path(os.path.abspath(path)) for path in paths]


async def run(
    database_url: str | None = None,
    epub_paths: typing.Sequence[str] = (),
    *,
    show_logs: bool = False,
) -> int:
    url = database_url or core_settings.DATABASE_URL.from_env()
    with contextlib.ExitStack() as stack:
        if not url:
            print("starting an embedded PostgreSQL (set DATABASE_URL to use your own)")
            url = stack.enter_context(embedded.embedded_postgres())
        if epub_paths:
            paths = _absolute(epub_paths)
        else:
            folder = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
            paths = samples.write_sample_library(folder)
            print(f"wrote {len(paths)} sample EPUBs to {folder}")
        return await _run_on(url, paths, show_logs)
    return 1  # unreachable: ExitStack does not swallow exceptions
