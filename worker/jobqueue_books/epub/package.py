"""The book from its package document, read the way reading systems read it: forgiving
about everything that does not stop a person from reading the book.

The package document (OPF) gives the Dublin Core metadata, the manifest (every file, by id)
and the spine (the documents in reading order). Chapter titles come from the table of
contents: the EPUB 3 navigation document's ``toc`` nav, else (or for what it leaves out)
the NCX; a document neither names is titled by its first heading.

Real books bend the rules, and each bend here is one a common reader forgives:

- hrefs with a ``#fragment`` (several manifest items for one file: it is read once),
  percent-encoding, ``./`` and ``../`` segments, or a case that differs from the stored
  name (made on a case-insensitive disk);
- two items with one id (the first counts), items without an id, spine entries naming no
  item, and manifest items the archive lacks (an image, even a chapter): skipped;
- a navigation document without a ``toc`` nav, or no table of contents at all;
- documents that are not well-formed, or whose declared encoding is wrong (``extract``);
- a declared language that the text plainly is not (``en`` on a Japanese book, as some
  converters write): a CJK text gets its language from its script.

What stays strict is everything ``safety`` checks before this module runs; an href that
leaves the book (``../`` above the root, a URL) names nothing.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import posixpath
import typing
import urllib.parse

import lxml.etree

from jobqueue_books import text as book_text
from jobqueue_books.epub import extract, model, safety

_DC_NS: typing.Final = "http://purl.org/dc/elements/1.1/"
_OPS_NS: typing.Final = "http://www.idpf.org/2007/ops"
_NCX_MEDIA_TYPE: typing.Final = "application/x-dtbncx+xml"
_DOCUMENT_MEDIA_TYPES: typing.Final = frozenset({"application/xhtml+xml", "text/html"})
_DOCUMENT_SUFFIXES: typing.Final = (".xhtml", ".html", ".htm", ".xht")
# Characters of the book's text that decide whether its declared language is plausible.
_LANGUAGE_SAMPLE: typing.Final = 20_000


@dataclasses.dataclass(frozen=True)
class _Item:
    href: str
    name: str | None  # the archive entry it names, if the book has it
    media_type: str
    properties: frozenset[str]

    @property
    def is_document(self) -> bool:
        # Some generators label XHTML as text/xml or application/xml; the name tells.
        return self.media_type in _DOCUMENT_MEDIA_TYPES or (
            self.name is not None and self.name.lower().endswith(_DOCUMENT_SUFFIXES)
        )


class _Files:
    """The book's text entries, found the forgiving way (see the module docstring)."""

    def __init__(self, markup: dict[str, bytes]) -> None:
        self.markup = markup
        self._folded: dict[str, str] = {}
        for name in sorted(markup):
            self._folded.setdefault(name.casefold(), name)

    def resolve(self, base: str, href: str | None) -> str | None:
        """The entry ``href`` names, relative to the folder ``base``; ``None`` if none."""
        if not href:
            return None
        target = href.split("#", 1)[0].split("?", 1)[0].strip()
        if not target or urllib.parse.urlsplit(target).scheme:
            return None
        path = urllib.parse.unquote(target)
        joined = posixpath.normpath(posixpath.join(base, path)).lstrip("/")
        if joined == ".." or joined.startswith("../"):
            return None  # outside the book
        if joined in self.markup:
            return joined
        return self._folded.get(joined.casefold())


def read(package_path: str, markup: dict[str, bytes], *, fallback_title: str) -> model.Book:
    """The book whose package document is ``package_path`` (checked by ``safety``)."""
    root = lxml.etree.fromstring(markup[package_path], parser=safety.xml_parser(recover=True))
    files = _Files(markup)
    base = posixpath.dirname(package_path)
    metadata = _metadata(root)
    items = _manifest(root, files, base)
    titles = _toc_titles(root, items, files)

    def first(name: str) -> str | None:
        found = metadata.get(name)
        return found[0][0] if found else None

    unique_id = root.get("unique-identifier")
    identifiers = metadata.get("identifier", [])
    identifier = next(
        (value for value, element_id in identifiers if unique_id and element_id == unique_id),
        identifiers[0][0] if identifiers else None,
    )
    description = first("description")
    missing: list[str] = []
    chapters = tuple(_chapters(root, items, titles, markup, missing))
    if not chapters and missing:
        raise model.EpubError(
            "EPUB could not be read: the documents its spine names are not in the book: "
            + ", ".join(missing[:3])
        )
    return model.Book(
        title=first("title") or fallback_title,
        authors=tuple(value for value, _ in metadata.get("creator", [])),
        language=book_text.checked_language(
            first("language"), "\n".join(chapter.text for chapter in chapters)[:_LANGUAGE_SAMPLE]
        ),
        identifier=identifier,
        publisher=first("publisher"),
        date=first("date"),
        description=(extract.html_to_text(description) or None) if description else None,
        chapters=chapters,
    )


def _children(root: typing.Any, part: str) -> typing.Any:
    found = root.find(f"{{*}}{part}")
    return [] if found is None else found


def _metadata(root: typing.Any) -> dict[str, list[tuple[str, str | None]]]:
    """Dublin Core values by element name, in order, each with its element's id. EPUB 2's
    legacy ``<dc-metadata>`` wrapper is looked into too."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for element in _children(root, "metadata").iter(f"{{{_DC_NS}}}*"):
        value = extract.one_line("".join(element.itertext()))
        if value:
            name = lxml.etree.QName(element).localname
            found.setdefault(name, []).append((value, element.get("id")))
    return found


def _manifest(root: typing.Any, files: _Files, base: str) -> dict[str, _Item]:
    items: dict[str, _Item] = {}
    for element in _children(root, "manifest").iter("{*}item"):
        item_id = element.get("id")
        if not item_id or item_id in items:
            continue  # no id: nothing can name it; a second one: the first counts
        href = element.get("href") or ""
        items[item_id] = _Item(
            href=href,
            name=files.resolve(base, href),
            media_type=(element.get("media-type") or "").strip().lower(),
            properties=frozenset((element.get("properties") or "").split()),
        )
    return items


def _chapters(
    root: typing.Any,
    items: dict[str, _Item],
    titles: dict[str, str],
    markup: dict[str, bytes],
    missing: list[str],
) -> collections.abc.Iterator[model.Chapter]:
    """The spine's documents with text, in order; ``missing`` gets the hrefs of those the
    archive lacks."""
    read: set[str] = set()
    index = 0
    for reference in _children(root, "spine").iter("{*}itemref"):
        item = items.get(reference.get("idref") or "")
        if item is not None and item.name is None:
            missing.append(item.href)
        if item is None or item.name is None or item.name in read:
            continue
        read.add(item.name)
        if (reference.get("linear") or "").strip().lower() == "no":
            continue
        # The navigation document is a table of contents, not part of the text.
        if not item.is_document or "nav" in item.properties:
            continue
        document = extract.parse_document(item.name, markup[item.name])
        if document is None:
            continue
        text = extract.assemble(extract.text_parts(extract.body(document)))
        if not text:
            continue
        title = titles.get(item.name) or extract.first_heading(document) or f"Chapter {index + 1}"
        yield model.Chapter(index=index, title=title, text=text)
        index += 1


# --- Tables of contents -------------------------------------------------------------------------


def _toc_titles(root: typing.Any, items: dict[str, _Item], files: _Files) -> dict[str, str]:
    """Titles by document, from the first table-of-contents entry pointing into it: the
    navigation document's, then the NCX's for documents it does not name."""
    titles: dict[str, str] = {}
    navs = [item for item in items.values() if "nav" in item.properties and item.name]
    for item in navs[:1]:
        assert item.name is not None
        for href, label in _nav_entries(item.name, files.markup[item.name]):
            _add_title(titles, files.resolve(posixpath.dirname(item.name), href), label)
    spine = root.find("{*}spine")
    ncx = items.get((spine.get("toc") if spine is not None else None) or "")
    if ncx is None or ncx.name is None:
        ncx = next(
            (item for item in items.values() if item.media_type == _NCX_MEDIA_TYPE and item.name),
            None,
        )
    if ncx is not None and ncx.name is not None:
        for href, label in _ncx_entries(ncx.name, files.markup[ncx.name]):
            _add_title(titles, files.resolve(posixpath.dirname(ncx.name), href), label)
    return titles


def _add_title(titles: dict[str, str], name: str | None, label: str) -> None:
    clean = extract.one_line(label)
    if name is not None and clean:
        titles.setdefault(name, clean)


def _nav_entries(name: str, data: bytes) -> list[tuple[str, str]]:
    """``(href, label)`` of the ``toc`` nav's links, in order; none without one."""
    document = extract.parse_document(name, data)
    if document is None:
        return []
    for nav in document.iter("{*}nav", "nav"):
        kinds = (nav.get(f"{{{_OPS_NS}}}type") or nav.get("epub:type") or "").split()
        if "toc" in kinds:
            return [
                (link.get("href") or "", "".join(link.itertext())) for link in nav.iter("{*}a", "a")
            ]
    return []


def _ncx_entries(name: str, data: bytes) -> list[tuple[str, str]]:
    try:
        root = lxml.etree.fromstring(
            extract.utf8_without_declaration(name, data), parser=safety.xml_parser(recover=True)
        )
    except lxml.etree.LxmlError:
        return []  # a broken NCX costs the titles, not the book
    if root is None:
        return []
    entries = []
    for point in root.iter("{*}navPoint"):
        content = point.find("{*}content")
        label = point.find("{*}navLabel/{*}text")
        if content is not None and label is not None:
            entries.append((content.get("src") or "", "".join(label.itertext())))
    return entries
