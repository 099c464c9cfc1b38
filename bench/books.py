#!/usr/bin/env python3
"""The book handlers' own work, without the queue: parse time per book, and embedding and
summarising time per 100 passages, on the sample library that ``jobqueue demo`` uses.

Each figure is the median of ``--repeats`` runs. The embedder is the default (``use``, or
``$JOBQUEUE_EMBEDDER``) unless ``--embedder`` names another (``e5`` and ``minilm`` need
their extras). How well each finds answers is measured by ``search_eval.py``. Run from the
repository root::

    .venv/bin/python bench/books.py
    .venv/bin/python bench/books.py --embedder minilm --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import tempfile

import _common
from jobqueue_books import embedding, epub, samples, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--embedder", default=None, help="default: the configured one")
    args = parser.parse_args()
    embedder = embedding.load_embedder(args.embedder)
    embedder.embed(["warm up: the first call loads the model"])
    with tempfile.TemporaryDirectory() as folder:
        paths = samples.write_sample_library(pathlib.Path(folder))
        print(f"{'BOOK':<40} {'CHAPTERS':>8} {'WORDS':>7} {'PASSAGES':>8} {'PARSE ms':>9}")
        all_passages: list[str] = []
        chapter_sets: list[list[str]] = []
        for path in paths:
            book = epub.read_epub(path)
            parse = _common.median_seconds(functools.partial(epub.read_epub, path), args.repeats)
            chapters = [chapter.text for chapter in book.chapters]
            pieces = [piece for chapter in chapters for piece in text.passages(chapter)]
            all_passages += pieces
            chapter_sets.append(chapters)
            print(
                f"{book.title[:40]:<40} {len(chapters):>8} {book.words:>7} {len(pieces):>8}"
                f" {parse * 1000:>9.1f}"
            )

    def summarize_all() -> None:
        for chapters in chapter_sets:
            for index, chapter in enumerate(chapters):
                text.summarize(chapter, chapters[:index] + chapters[index + 1 :])

    count = len(all_passages)
    embed = _common.median_seconds(lambda: embedder.embed(all_passages), args.repeats)
    summarize = _common.median_seconds(summarize_all, args.repeats)
    split = _common.median_seconds(
        lambda: [text.passages(c) for chapters in chapter_sets for c in chapters], args.repeats
    )
    print(f"\n{count} passages in all ({embedder.name})")
    print(f"embed:     {embed * 1000:8.1f} ms in all, {embed * 100_000 / count:6.2f} ms per 100")
    print(
        f"summarize: {summarize * 1000:8.1f} ms in all, {summarize * 100_000 / count:6.2f} ms per"
        " 100 passages' worth of text"
    )
    print(f"split:     {split * 1000:8.1f} ms in all, {split * 100_000 / count:6.2f} ms per 100")


if __name__ == "__main__":
    main()
