#!/usr/bin/env python3
"""The EPUB reader over a folder of real books: for each ``*.epub`` under the folders given,
whether it parsed (or the reason it did not), its chapters, words, language, title and parse
time; then the success rate. No database, no queue: only ``jobqueue_books.epub``.

Books from Debian packages make a corpus no one here wrote, in several languages and from
several generators (DocBook, Sphinx, calibre, ...). Fetch and unpack them outside the
repository; they are not committed::

    mkdir -p /tmp/epubs && cd /tmp/epubs
    apt-get download live-manual-epub debian-history debmake-doc calibre developers-reference
    for deb in *.deb; do dpkg-deb -x "$deb" root; done
    cd - && .venv/bin/python bench/epub_corpus.py /tmp/epubs/root

``--json`` prints one JSON object per book instead of the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

from jobqueue_books import epub


@dataclasses.dataclass(frozen=True)
class Outcome:
    path: str
    ok: bool
    error: str | None
    title: str | None
    language: str | None
    chapters: int
    words: int
    milliseconds: float


def read_one(path: pathlib.Path) -> Outcome:
    started = time.perf_counter()
    try:
        book = epub.read_epub(path)
    except epub.EpubError as error:
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(str(path), False, str(error), None, None, 0, 0, elapsed)
    elapsed = (time.perf_counter() - started) * 1000
    return Outcome(
        str(path), True, None, book.title, book.language, len(book.chapters), book.words, elapsed
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folders", nargs="+", type=pathlib.Path)
    parser.add_argument("--json", action="store_true", help="one JSON object per book")
    args = parser.parse_args()
    paths = sorted(path for folder in args.folders for path in folder.rglob("*.epub"))
    if not paths:
        print("no .epub files found", file=sys.stderr)
        return 1
    outcomes = [read_one(path) for path in paths]
    if args.json:
        for outcome in outcomes:
            print(json.dumps(dataclasses.asdict(outcome), ensure_ascii=False))
    else:
        common = pathlib.Path(os.path.commonpath(paths))
        if len(paths) == 1:
            common = common.parent
        print(f"{'BOOK':<58} {'LANG':<6} {'CHAP':>4} {'WORDS':>7} {'ms':>6}  RESULT")
        for outcome in outcomes:
            name = str(pathlib.Path(outcome.path).relative_to(common))[-58:]
            result = (
                "ok: " + (outcome.title or "")[:40] if outcome.ok else f"FAILED: {outcome.error}"
            )
            print(
                f"{name:<58} {outcome.language or '-':<6} {outcome.chapters:>4}"
                f" {outcome.words:>7} {outcome.milliseconds:>6.0f}  {result}"
            )
    parsed = sum(outcome.ok for outcome in outcomes)
    print(f"\nparsed {parsed} of {len(outcomes)} books ({100 * parsed / len(outcomes):.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
