"""The book from ebooklib's model of the package: Dublin Core metadata, the spine's
documents in reading order as chapters, and their titles from the table of contents (NCX
or navigation document), else their first heading."""

from __future__ import annotations

import collections.abc
import posixpath
import typing
import urllib.parse

import ebooklib.epub

from jobqueue_books.epub import extract, model

_DC_NS: typing.Final = "http://purl.org/dc/elements/1.1/"
_DOCUMENT_MEDIA_TYPES: typing.Final = frozenset({"application/xhtml+xml", "text/html"})


def book(ebook: typing.Any, unique_id: str | None, *, fallback_title: str) -> model.Book:
    metadata = ebook.metadata.get(_DC_NS, {})

    def values(name: str) -> list[tuple[str, dict[str, typing.Any]]]:
        found = []
        for value, attributes in metadata.get(name, []):
            clean = extract.one_line(value) if isinstance(value, str) else ""
            if clean:
                found.append((clean, attributes if isinstance(attributes, dict) else {}))
        return found

    def first(name: str) -> str | None:
        found = values(name)
        return found[0][0] if found else None

    identifiers = values("identifier")
    # Not ebooklib's book.uid: it starts as a random UUID and keeps it when no identifier
    # matches, and ebooklib takes the id of the last dc:identifier with one as the key.
    identifier = next(
        (value for value, attributes in identifiers if attributes.get("id") == unique_id),
        identifiers[0][0] if identifiers else None,
    )
    raw_description = next(
        (value for value, _ in metadata.get("description", []) if isinstance(value, str)), None
    )
    return model.Book(
        title=first("title") or fallback_title,
        authors=tuple(value for value, _ in values("creator")),
        language=first("language"),
        identifier=identifier,
        publisher=first("publisher"),
        date=first("date"),
        description=(extract.html_to_text(raw_description) or None) if raw_description else None,
        chapters=tuple(_chapters(ebook)),
    )


def _chapters(ebook: typing.Any) -> collections.abc.Iterator[model.Chapter]:
    titles = _toc_titles(ebook)
    items: dict[str, typing.Any] = {}
    for item in ebook.get_items():
        items.setdefault(item.get_id(), item)
    seen: set[str] = set()
    index = 0
    for idref, linear in ebook.spine:
        if not isinstance(idref, str) or idref in seen:
            continue
        seen.add(idref)
        if isinstance(linear, str) and linear.strip().lower() == "no":
            continue
        item = items.get(idref)
        # The navigation document is a table of contents, not part of the text.
        if item is None or isinstance(item, ebooklib.epub.EpubNav):
            continue
        if item.media_type not in _DOCUMENT_MEDIA_TYPES:
            continue
        # item.content, the bytes as stored: EpubHtml.get_content() rebuilds the document
        # from ebooklib's template and loses what its own re-parse drops (UTF-16 text, say).
        content = item.content if isinstance(item.content, bytes) else b""
        root = extract.parse_document(item.get_name(), content)
        if root is None:
            continue
        chapter_text = extract.assemble(extract.text_parts(extract.body(root)))
        if not chapter_text:
            continue
        title = (
            titles.get(posixpath.normpath(item.get_name()))
            or extract.first_heading(root)
            or f"Chapter {index + 1}"
        )
        yield model.Chapter(index=index, title=title, text=chapter_text)
        index += 1


def _toc_titles(ebook: typing.Any) -> dict[str, str]:
    """Titles from the table of contents by document path (relative to the OPF folder);
    the first entry pointing into a document names it."""
    base = ""
    items = list(ebook.get_items())
    if not any(isinstance(item, ebooklib.epub.EpubNav) for item in items):
        # The NCX's hrefs are relative to the NCX; ebooklib already resolved the nav's.
        ncx = next((item for item in items if isinstance(item, ebooklib.epub.EpubNcx)), None)
        if ncx is not None:
            base = posixpath.dirname(ncx.get_name())
    toc = ebook.toc if isinstance(ebook.toc, list | tuple) else [ebook.toc]
    titles: dict[str, str] = {}
    for href, title in _toc_entries(toc):
        target = href.split("#", 1)[0]
        if not target or "://" in target:
            continue
        key = posixpath.normpath(posixpath.join(base, urllib.parse.unquote(target)))
        clean = extract.one_line(title)
        if clean:
            titles.setdefault(key, clean)
    return titles


def _toc_entries(
    entries: collections.abc.Iterable[typing.Any],
) -> collections.abc.Iterator[tuple[str, str]]:
    # ebooklib's toc: Link and Section objects, and (Section, [children]) pairs.
    for entry in entries:
        if isinstance(entry, list | tuple):
            yield from _toc_entries(entry)
            continue
        href = getattr(entry, "href", None)
        title = getattr(entry, "title", None)
        if isinstance(href, str) and isinstance(title, str):
            yield href, title
