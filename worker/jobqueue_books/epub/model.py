"""What reading an EPUB gives and what it may cost: the book model, the limits, the error,
and the wording of its messages."""

from __future__ import annotations

import dataclasses
import functools
import typing

from jobqueue_books import text as book_text

KIB: typing.Final = 1024
MIB: typing.Final = 1024 * KIB


class EpubError(ValueError):
    """The file cannot be read as a book; the message says why, for a person to read."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What reading one book may cost. The defaults are far above real books (a novel is
    1-5 MiB, an illustrated book rarely over 50 MiB) and far below what hurts a worker."""

    max_file_bytes: int = 100 * MIB
    max_uncompressed_bytes: int = 300 * MIB
    max_compression_ratio: float = 100.0
    # Small entries may compress extremely well (repetitive markup) and cannot hurt; the
    # ratio only signals a bomb for big ones.
    ratio_check_min_bytes: int = 1 * MIB
    max_entries: int = 10_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"Limits.{field.name} must be positive")


@dataclasses.dataclass(frozen=True)
class Chapter:
    """One spine document with text: ``index`` is 0-based in reading order, ``text`` is
    plain text with paragraphs separated by blank lines (a ``<br>`` is a single newline)."""

    index: int
    title: str
    text: str

    @property
    def words(self) -> int:
        return book_text.word_count(self.text)


@dataclasses.dataclass(frozen=True)
class Book:
    """A book's metadata (Dublin Core, from the package document) and its chapters."""

    title: str
    authors: tuple[str, ...]
    language: str | None
    identifier: str | None
    publisher: str | None
    date: str | None
    description: str | None
    chapters: tuple[Chapter, ...]

    @functools.cached_property
    def words(self) -> int:
        """Words in all chapters; CJK characters count one each (``text.word_count``)."""
        return sum(chapter.words for chapter in self.chapters)


def size(count: int) -> str:
    if count < KIB:
        return f"{count} bytes"
    value, unit = (count / MIB, "MiB") if count >= MIB else (count / KIB, "KiB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def describe(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # str() of a KeyError adds quotes around the message
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
