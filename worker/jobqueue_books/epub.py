"""Reading EPUB files that anyone may have made: the input of the ``parseBook`` job.

An EPUB is a zip archive of XML documents, and both halves are classic attack surfaces.
``ebooklib``, which builds our model of the book, was not written for hostile input: it
reads every manifest entry whole into memory, trusts the names the package document gives
it, treats a directory path as an unpacked book, and parses XML with libxml2 in recover
mode with settings that are not ours. So ``read_epub`` decides whether a file is safe
*before* ebooklib or any XML parser sees it:

1. The file: a regular file (a FIFO would block the worker thread forever), at most
   ``Limits.max_file_bytes``, read into memory once. ebooklib then gets those bytes, never
   the path, so what was checked is exactly what is parsed (nothing can swap the file in
   between) and ebooklib's directory mode cannot be reached.
2. The archive: a zip whose central directory can be read (a truncated download has none),
   at most ``max_entries`` entries, every name relative and without ``..`` components,
   backslashes, drive letters or control characters (a name is where a later extraction
   would write), and no duplicate or encrypted entries.
3. Zip bombs: the declared uncompressed total must fit ``max_uncompressed_bytes`` and no
   sizeable entry may expand more than ``max_compression_ratio`` times. Declared sizes are
   the attacker's to choose, so every entry is then really inflated, in chunks, with its
   declared size and the remaining budget as a hard cap (the CRC is checked on the way).
4. The container: ``META-INF/container.xml`` names a package document that is in the
   archive and has a metadata, manifest and spine.
5. Entities: every entry that may be XML is refused if it declares an entity
   (``<!ENTITY``) or has a DOCTYPE with an internal subset. That stops external entities
   (XXE: reading local files or URLs into the book) and entity expansion (billion laughs)
   whatever the parser settings, including those of ebooklib's parser. The scan reads the
   text in every encoding a parser could choose (byte-order mark, UTF-16/32 and EBCDIC
   sniffing, the declared encoding), so UTF-16 or UTF-7 cannot hide a declaration. Real
   books need neither: named entities such as ``&nbsp;`` come from the external XHTML DTD,
   which nothing loads; documents that use them are read with the HTML parser instead.

Only then does ebooklib build its model; anything it raises becomes ``EpubError``. Chapter
text is parsed by our own lxml parser with entity resolution, DTD loading and network
access off and libxml2's size limits on (``huge_tree=False``).
"""

from __future__ import annotations

import codecs
import collections.abc
import dataclasses
import functools
import html.parser
import io
import os
import pathlib
import posixpath
import re
import stat
import typing
import unicodedata
import urllib.parse
import zipfile

import ebooklib.epub
import lxml.etree
import lxml.html

from jobqueue_books import text as book_text

KIB: typing.Final = 1024
MIB: typing.Final = 1024 * KIB

CONTAINER_PATH: typing.Final = "META-INF/container.xml"
ENCRYPTION_PATH: typing.Final = "META-INF/encryption.xml"
_CONTAINER_NS: typing.Final = "urn:oasis:names:tc:opendocument:xmlns:container"
_OPF_NS: typing.Final = "http://www.idpf.org/2007/opf"
_DC_NS: typing.Final = "http://purl.org/dc/elements/1.1/"
_PACKAGE_MEDIA_TYPE: typing.Final = "application/oebps-package+xml"
_DOCUMENT_MEDIA_TYPES: typing.Final = frozenset({"application/xhtml+xml", "text/html"})
_CHUNK: typing.Final = 256 * KIB


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


def resolve_book_path(file_path: str, books_dir: str | None) -> pathlib.Path:
    """The real path (symlinks resolved) of a job's ``filePath``: absolute, or relative to
    ``books_dir``, inside which it must then stay; relative to the current directory when
    there is no ``books_dir``."""
    if not file_path or "\x00" in file_path:
        raise EpubError(f"invalid file path {file_path!r}")
    try:
        if books_dir is None:
            resolved = pathlib.Path(file_path).resolve()
        else:
            root = pathlib.Path(books_dir).resolve()
            # An absolute file_path replaces root in the join, and is then checked like any.
            resolved = (root / file_path).resolve()
            if not resolved.is_relative_to(root):
                raise EpubError(f"path {file_path!r} is outside the books directory {books_dir!r}")
        # Only now, so that nothing is revealed about files outside the books directory.
        if not resolved.exists():
            raise EpubError(f"no such file: {file_path}")
        if not resolved.is_file():
            raise EpubError(f"not a regular file: {file_path}")
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, on 3.11
        raise EpubError(f"cannot resolve path {file_path!r}: {error}") from None
    return resolved


_DEFAULT_LIMITS: typing.Final = Limits()


def read_epub(path: pathlib.Path, limits: Limits = _DEFAULT_LIMITS) -> Book:
    """Read the book at ``path``, or raise ``EpubError`` saying what is wrong with it.
    Synchronous and CPU-bound: run it in a worker thread."""
    path = pathlib.Path(path)
    data = _read_file(path, limits)
    markup = _check_archive(data, limits)
    package_path = _check_container(markup)
    unique_id = _check_package(package_path, markup)
    _check_not_encrypted(markup)
    try:
        ebook = ebooklib.epub.read_epub(io.BytesIO(data), {"ignore_ncx": True})
    except Exception as error:  # anything at all: the caller must only ever see EpubError
        raise EpubError(f"EPUB could not be read: {_describe(error)}") from error
    try:
        return _book(ebook, unique_id, fallback_title=path.stem)
    except EpubError:
        raise
    except Exception as error:  # ebooklib's model can hold surprises (None, odd types)
        raise EpubError(f"EPUB could not be read: {_describe(error)}") from error


# --- The file and the archive --------------------------------------------------------------


def _read_file(path: pathlib.Path, limits: Limits) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise EpubError(f"no such file: {path}") from None
    except OSError as error:
        raise EpubError(f"cannot open {path}: {error.strerror or error}") from None
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise EpubError(f"not a regular file: {path}")
        # The size is checked again after reading: the file may grow in between.
        size = status.st_size
        data = b""
        if size <= limits.max_file_bytes:
            data = file.read(limits.max_file_bytes + 1)
            size = len(data)
    if size > limits.max_file_bytes:
        raise EpubError(
            f"EPUB file is {_size(size)}, over the {_size(limits.max_file_bytes)} limit"
        )
    return data


def _check_archive(data: bytes, limits: Limits) -> dict[str, bytes]:
    """Every check on the zip itself; returns the entries that may be XML, by name."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if data.startswith(b"PK\x03\x04"):
            raise EpubError("not an EPUB: the zip archive is truncated or damaged")
        raise EpubError("not an EPUB: the file is not a zip archive")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as error:  # BadZipFile, but also EOFError, ValueError, OverflowError...
        raise EpubError(f"not an EPUB: the zip archive is damaged ({_describe(error)})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise EpubError(
                f"EPUB has {len(entries)} entries, over the limit of {limits.max_entries}"
            )
        seen: set[str] = set()
        for entry in entries:
            problem = _name_problem(entry.orig_filename)
            if problem:
                raise EpubError(problem)
            if entry.filename in seen:
                # Two entries of one name: a checker may read one and a parser the other.
                raise EpubError(f"EPUB has two entries named {entry.filename!r}")
            seen.add(entry.filename)
            if entry.flag_bits & 0x1:
                raise EpubError(f"EPUB entry {entry.filename!r} is encrypted")
        _check_declared_sizes(entries, limits)
        return _inflate_all(archive, entries, limits)


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")


def _name_problem(name: str) -> str | None:
    if not name:
        return "EPUB has an entry with an empty name"
    if _CONTROL_CHARACTER.search(name):
        return f"EPUB entry {name!r} has a control character in its name"
    if "\\" in name:
        # Not a separator in zip names, but Windows tools treat it as one.
        return f"EPUB entry {name!r} has a backslash in its name"
    if name.startswith("/") or _DRIVE.match(name):
        return f"EPUB entry {name!r} has an absolute path"
    if ".." in name.split("/"):
        return f"EPUB entry {name!r} points outside the book"
    return None


def _check_declared_sizes(entries: list[zipfile.ZipInfo], limits: Limits) -> None:
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_uncompressed_bytes:
        raise EpubError(
            f"EPUB would unpack to {_size(total)},"
            f" over the {_size(limits.max_uncompressed_bytes)} limit"
        )
    for entry in entries:
        if entry.file_size < limits.ratio_check_min_bytes:
            continue
        ratio = entry.file_size / max(entry.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise EpubError(
                f"EPUB entry {entry.filename!r} would expand {ratio:.0f} times"
                f" (to {_size(entry.file_size)}), over the limit of"
                f" {limits.max_compression_ratio:g} times: a zip bomb"
            )


# Binary formats a book carries. Entries that start like one are only searched for the raw
# bytes of a declaration; everything else may be XML and is decoded and searched in full.
_BINARY_MAGIC: typing.Final = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"RIFF",
    b"wOFF",
    b"wOF2",
    b"OTTO",
    b"\x00\x01\x00\x00",
    b"ID3",
    b"OggS",
)
_RAW_DECLARATION = re.compile(rb"<![ \t\r\n]{0,8}(?:ENTITY|DOCTYPE)", re.IGNORECASE)
_RAW_OVERLAP: typing.Final = 24


def _inflate_all(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], limits: Limits
) -> dict[str, bytes]:
    budget = limits.max_uncompressed_bytes
    markup: dict[str, bytes] = {}
    for entry in entries:
        if entry.is_dir():
            continue
        cap = min(entry.file_size, budget)
        chunks: list[bytes] = []
        binary: bool | None = None
        tail = b""
        inflated = 0
        try:
            with archive.open(entry) as stream:
                while inflated <= cap:
                    chunk = stream.read(min(_CHUNK, cap + 1 - inflated))
                    if not chunk:
                        break
                    inflated += len(chunk)
                    if binary is None:
                        binary = chunk.startswith(_BINARY_MAGIC) or chunk[4:8] == b"ftyp"
                    if not binary:
                        chunks.append(chunk)
                    elif _RAW_DECLARATION.search(tail + chunk):
                        raise EpubError(
                            f"XML in {entry.filename} declares entities (DOCTYPE/ENTITY),"
                            " which are refused"
                        )
                    else:
                        tail = chunk[-_RAW_OVERLAP:]
        except EpubError:
            raise
        except Exception as error:  # zlib, bz2, lzma, CRC and header errors alike
            raise EpubError(
                f"EPUB entry {entry.filename!r} is damaged: {_describe(error)}"
            ) from None
        if inflated > entry.file_size:
            raise EpubError(
                f"EPUB entry {entry.filename!r} holds more data than its header declares"
            )
        if inflated > budget:
            raise EpubError(
                f"EPUB would unpack to more than the {_size(limits.max_uncompressed_bytes)} limit"
            )
        budget -= inflated
        if not binary:
            content = b"".join(chunks)
            _refuse_entities(entry.filename, content)
            markup[entry.filename] = content
    return markup


# --- Entities and encodings ----------------------------------------------------------------

_DECLARATION = re.compile(r"<!\s*(ENTITY|DOCTYPE)", re.IGNORECASE)
_DOCTYPE_SCAN: typing.Final = 4096
_XML_ENCODING = re.compile(r"""<\?xml[^>]*?encoding\s*=\s*["']([^"'\s]{1,40})["']""")
_META_CHARSET = re.compile(r"""<meta[^>]*?charset\s*=\s*["']?([^"'\s/>;]{1,40})""", re.I)
_BYTE_ORDER_MARKS: typing.Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _sniffed_encoding(data: bytes) -> str | None:
    """The encoding an XML parser infers from the first bytes, before any declaration."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return encoding
    head = data[:4]
    if head == b"\x4c\x6f\xa7\x94":  # "<?xm" in EBCDIC
        return "cp500"
    if head.startswith(b"\x00\x00\x00"):
        return "utf-32-be"
    if head[1:4] == b"\x00\x00\x00":
        return "utf-32-le"
    if head.startswith(b"\x00"):
        return "utf-16-be"
    if head[1:2] == b"\x00":
        return "utf-16-le"
    return None


def _encodings(name: str, data: bytes) -> list[str]:
    """Every encoding a parser might read ``data`` in, most likely first."""
    found: list[str] = []
    sniffed = _sniffed_encoding(data)
    if sniffed:
        found.append(sniffed)
    head = data[:2048]
    views = [head.decode("latin-1")]
    if sniffed:
        views.append(head.decode(sniffed, errors="replace"))
    for view in views:
        for pattern in (_XML_ENCODING, _META_CHARSET):
            match = pattern.search(view)
            if not match:
                continue
            try:
                encoding = codecs.lookup(match.group(1)).name
            except LookupError:
                raise EpubError(
                    f"XML in {name} declares the encoding {match.group(1)!r},"
                    " which is not supported"
                ) from None
            if encoding not in found:
                found.append(encoding)
    if not found:
        found.append("utf-8")
    return found


def _refuse_entities(name: str, data: bytes) -> None:
    # Latin-1 shows every byte as itself: the view of all ASCII-compatible encodings.
    views = [data.decode("latin-1")]
    views += [data.decode(encoding, errors="replace") for encoding in _encodings(name, data)]
    for view in views:
        for match in _DECLARATION.finditer(view):
            if match.group(1).upper() == "ENTITY" or _has_internal_subset(view, match.end()):
                raise EpubError(
                    f"XML in {name} declares entities (DOCTYPE/ENTITY), which are refused"
                )


def _has_internal_subset(view: str, start: int) -> bool:
    """Whether the DOCTYPE that starts before ``start`` has a ``[...]`` subset; quoted
    public and system identifiers may contain ``>`` or ``[``, so they are skipped."""
    quote = ""
    # A real DOCTYPE is a few hundred characters; the bound keeps many of them linear.
    for character in view[start : start + _DOCTYPE_SCAN]:
        if quote:
            if character == quote:
                quote = ""
        elif character in "\"'":
            quote = character
        elif character == "[":
            return True
        elif character == ">":
            return False
    return True  # not closed soon: not something a book needs, so refuse it like a subset


# --- Container and package document --------------------------------------------------------


def _xml_parser(*, recover: bool = False) -> typing.Any:
    # A new parser each time: lxml parsers must not be shared between threads.
    return lxml.etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )


def _parse_xml(name: str, markup: dict[str, bytes]) -> typing.Any:
    """The root element of an entry, parsed as leniently as ebooklib parses it."""
    if name not in markup:
        raise EpubError(f"EPUB entry {name} is not XML")
    try:
        root = lxml.etree.fromstring(markup[name], parser=_xml_parser(recover=True))
    except lxml.etree.LxmlError as error:
        raise EpubError(f"EPUB entry {name} is not well-formed XML: {error}") from None
    if root is None:
        raise EpubError(f"EPUB entry {name} is not well-formed XML")
    return root


def _check_container(markup: dict[str, bytes]) -> str:
    """The path of the package document (OPF) that ebooklib will read."""
    if CONTAINER_PATH not in markup:
        raise EpubError(f"EPUB is missing {CONTAINER_PATH}")
    root = _parse_xml(CONTAINER_PATH, markup)
    paths = [
        rootfile.get("full-path") or ""
        for rootfile in root.iter(f"{{{_CONTAINER_NS}}}rootfile")
        if rootfile.get("media-type") == _PACKAGE_MEDIA_TYPE
    ]
    if not paths:
        raise EpubError(f"EPUB {CONTAINER_PATH} names no package document (OPF)")
    # ebooklib takes the last one, and it normalises the path before looking it up.
    package_path = posixpath.normpath(paths[-1])
    if package_path not in markup:
        raise EpubError(
            f"EPUB {CONTAINER_PATH} names {paths[-1]!r} as the package document,"
            " which is not in the book"
        )
    return package_path


def _check_package(package_path: str, markup: dict[str, bytes]) -> str | None:
    """Checks what ebooklib needs without checking itself; returns the unique-identifier."""
    root = _parse_xml(package_path, markup)
    if root.tag != f"{{{_OPF_NS}}}package":
        raise EpubError(f"EPUB package document {package_path} is not an OPF <package>")
    for part in ("metadata", "manifest", "spine"):
        if root.find(f"{{{_OPF_NS}}}{part}") is None:
            raise EpubError(f"EPUB package document {package_path} has no <{part}>")
    unique_id = root.get("unique-identifier")
    return str(unique_id) if unique_id else None


def _check_not_encrypted(markup: dict[str, bytes]) -> None:
    """Refuse DRM: encrypted text would come out as garbage. Obfuscated fonts are fine."""
    if ENCRYPTION_PATH not in markup:
        return
    root = _parse_xml(ENCRYPTION_PATH, markup)
    for reference in root.iter("{*}CipherReference"):
        target = urllib.parse.unquote(reference.get("URI") or "").lower()
        if target.endswith((".xhtml", ".html", ".htm", ".xml", ".opf", ".ncx")):
            raise EpubError(f"EPUB is DRM-protected: its text is encrypted ({ENCRYPTION_PATH})")


# --- Building the book from ebooklib's model -----------------------------------------------


def _book(ebook: typing.Any, unique_id: str | None, *, fallback_title: str) -> Book:
    metadata = ebook.metadata.get(_DC_NS, {})

    def values(name: str) -> list[tuple[str, dict[str, typing.Any]]]:
        found = []
        for value, attributes in metadata.get(name, []):
            clean = _one_line(value) if isinstance(value, str) else ""
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
    return Book(
        title=first("title") or fallback_title,
        authors=tuple(value for value, _ in values("creator")),
        language=first("language"),
        identifier=identifier,
        publisher=first("publisher"),
        date=first("date"),
        description=(_html_to_text(raw_description) or None) if raw_description else None,
        chapters=tuple(_chapters(ebook)),
    )


def _chapters(ebook: typing.Any) -> collections.abc.Iterator[Chapter]:
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
        root = _parse_document(item.get_name(), content)
        if root is None:
            continue
        chapter_text = _assemble(_text_parts(_body(root)))
        if not chapter_text:
            continue
        title = (
            titles.get(posixpath.normpath(item.get_name()))
            or _first_heading(root)
            or f"Chapter {index + 1}"
        )
        yield Chapter(index=index, title=title, text=chapter_text)
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
        clean = _one_line(title)
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


# --- Text from XHTML -----------------------------------------------------------------------

_PARAGRAPH_MARK: typing.Final = "\x00"
_LINE_MARK: typing.Final = "\x01"
# Marks are control characters XML cannot carry; any that slip in as text become spaces.
_MARKS_TO_SPACES: typing.Final = str.maketrans({_PARAGRAPH_MARK: " ", _LINE_MARK: " "})
_DROPPED: typing.Final = frozenset(
    {"head", "script", "style", "template", "svg", "rt", "rp", "title", "noscript"}
)
_BLOCKS: typing.Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "li", "main",
        "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead",
        "tr", "ul",
    }
)  # fmt: skip
_CELLS: typing.Final = frozenset({"td", "th"})
_XML_DECLARATION = re.compile(r"^\ufeff?\s*<\?xml[^>]*>")


def _parse_document(name: str, data: bytes) -> typing.Any:
    """The root of an XHTML document, or ``None`` when it is empty. Strict XML first; a
    document that is not well-formed (often: HTML entities such as ``&nbsp;``, undefined
    without the DTD) is read again by the HTML parser, as reading systems do."""
    try:
        return lxml.etree.fromstring(data, parser=_xml_parser())
    except lxml.etree.XMLSyntaxError:
        pass
    # The HTML parser gets text, so it cannot pick an encoding the entity scan did not read.
    decoded = _XML_DECLARATION.sub("", data.decode(_encodings(name, data)[0], errors="replace"))
    if not decoded.strip():
        return None
    parser = lxml.html.HTMLParser(
        no_network=True, remove_comments=True, remove_pis=True, huge_tree=False
    )
    try:
        return lxml.html.document_fromstring(decoded, parser=parser)
    except (lxml.etree.LxmlError, ValueError) as error:
        if "empty" in str(error).lower():
            return None
        raise EpubError(f"EPUB document {name} cannot be parsed: {error}") from None


def _local_name(element: typing.Any) -> str:
    tag = element.tag
    return tag.rpartition("}")[2].lower() if isinstance(tag, str) else ""


def _body(root: typing.Any) -> typing.Any:
    body = root.find(".//{*}body")
    return root if body is None else body


def _text_parts(top: typing.Any) -> list[str]:
    """Text of ``top`` and its descendants, with paragraph and line marks between blocks."""
    parts: list[str] = []
    skipping: typing.Any = None
    in_pre = 0

    def add(text: str | None) -> None:
        if text:
            text = text.translate(_MARKS_TO_SPACES)
            parts.append(text.replace("\n", _LINE_MARK) if in_pre else text)

    for event, element in lxml.etree.iterwalk(top, events=("start", "end")):
        if skipping is not None:
            if event == "end" and element is skipping:
                skipping = None
                add(element.tail)
            continue
        name = _local_name(element)
        if event == "start":
            if not name:  # a comment, processing instruction or entity: only its tail counts
                continue
            if name in _DROPPED:
                skipping = element
                continue
            if name in _BLOCKS:
                parts.append(_PARAGRAPH_MARK)
            elif name == "br":
                parts.append(_LINE_MARK)
            elif name in _CELLS:
                parts.append(" ")
            if name == "pre":
                in_pre += 1
            add(element.text)
        else:
            if name == "pre":
                in_pre -= 1
            if name in _BLOCKS:
                parts.append(_PARAGRAPH_MARK)
            if element is not top:
                add(element.tail)
    return parts


def _assemble(parts: collections.abc.Iterable[str]) -> str:
    paragraphs = []
    for block in "".join(parts).split(_PARAGRAPH_MARK):
        lines = (" ".join(line.split()) for line in block.split(_LINE_MARK))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return unicodedata.normalize("NFC", "\n\n".join(paragraphs))


def _first_heading(root: typing.Any) -> str | None:
    for heading in _body(root).iter("{*}h1", "{*}h2", "{*}h3"):
        title = _one_line(_assemble(_text_parts(heading)))
        if title:
            return title
    return None


def _one_line(value: str) -> str:
    return unicodedata.normalize("NFC", " ".join(value.split()))


class _HtmlText(html.parser.HTMLParser):
    """Plain text of an HTML fragment (a description). The standard library's parser has no
    entity declarations, DTDs or network access to worry about."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self._skipping += 1
        elif tag in _BLOCKS:
            self.parts.append(_PARAGRAPH_MARK)
        elif tag == "br":
            self.parts.append(_LINE_MARK)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append(_PARAGRAPH_MARK)

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data.translate(_MARKS_TO_SPACES))


def _html_to_text(fragment: str) -> str:
    parser = _HtmlText()
    parser.feed(fragment)
    parser.close()
    return _assemble(parser.parts)


# --- Messages ------------------------------------------------------------------------------


def _size(count: int) -> str:
    if count < KIB:
        return f"{count} bytes"
    value, unit = (count / MIB, "MiB") if count >= MIB else (count / KIB, "KiB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _describe(error: BaseException) -> str:
    if isinstance(error, ebooklib.epub.EpubException):
        return str(error.msg)
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # str() of a KeyError adds quotes around the message
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
