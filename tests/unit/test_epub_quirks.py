"""Books common readers open must be read: one fixture per quirk found in real EPUBs and
per common generator's shape (``quirky_epubs``), each checked for its chapters, their text
and the metadata a reader would show."""

from __future__ import annotations

import collections.abc
import pathlib

import hostile_epubs
import pytest
import quirky_epubs

from jobqueue_books import epub

Maker = collections.abc.Callable[[pathlib.Path], tuple[pathlib.Path, quirky_epubs.Expected]]


@pytest.mark.parametrize("maker", quirky_epubs.QUIRKS, ids=lambda maker: maker.__name__)
def test_a_quirky_book_is_read_as_a_reader_shows_it(tmp_path: pathlib.Path, maker: Maker) -> None:
    path, expected = maker(tmp_path)
    book = epub.read_epub(path)
    assert book.title == expected.title
    assert book.authors == expected.authors
    assert book.language == expected.language
    if expected.identifier is not None:
        assert book.identifier == expected.identifier
    assert [chapter.title for chapter in book.chapters] == list(expected.chapters)
    assert [chapter.index for chapter in book.chapters] == list(range(len(expected.chapters)))
    for chapter, phrase in zip(book.chapters, expected.phrases, strict=True):
        assert phrase in chapter.text, (chapter.title, chapter.text)


def test_an_href_cannot_leave_the_book(tmp_path: pathlib.Path) -> None:
    """``../`` above the archive's root names nothing, even where a file of that name sits
    at the root; a book whose only document is such an href has no text to read."""
    make = hostile_epubs
    opf = make.package(manifest=make.item("a", "../../a.xhtml"), spine='<itemref idref="a"/>')
    path = make.write_book(tmp_path / "escape.epub", opf, {"a.xhtml": make.xhtml("<p>x</p>")})
    with pytest.raises(epub.EpubError, match=r"spine names are not in the book: \.\./\.\./a"):
        epub.read_epub(path)


def test_a_book_in_a_cjk_language_keeps_its_declared_variant(tmp_path: pathlib.Path) -> None:
    make = hostile_epubs
    opf = make.package(
        metadata="<dc:title>書</dc:title><dc:language>zh-TW</dc:language>",
        manifest=make.item("a", "a.xhtml"),
        spine='<itemref idref="a"/>',
    )
    files = {"OEBPS/a.xhtml": make.xhtml("<p>這是一本很小的書。</p>")}
    assert epub.read_epub(make.write_book(tmp_path / "zh.epub", opf, files)).language == "zh-TW"
