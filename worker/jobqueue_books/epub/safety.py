"""The safety checks an EPUB passes before any XML parser sees it (see the
package's docstring for the list): the file, the archive, zip bombs, entities in every
encoding a parser could choose, the container and package documents, DRM; and the one
XML parser configuration used on book content."""

from __future__ import annotations

import codecs
import io
import os
import pathlib
import posixpath
import re
import stat
import typing
import urllib.parse
import zipfile

import lxml.etree

from jobqueue_books.epub import model

CONTAINER_PATH: typing.Final = "META-INF/container.xml"
ENCRYPTION_PATH: typing.Final = "META-INF/encryption.xml"
_CONTAINER_NS: typing.Final = "urn:oasis:names:tc:opendocument:xmlns:container"
OPF_NS: typing.Final = "http://www.idpf.org/2007/opf"
_PACKAGE_MEDIA_TYPE: typing.Final = "application/oebps-package+xml"
_CHUNK: typing.Final = 256 * model.KIB


def resolve_book_path(file_path: str, books_dir: str | None) -> pathlib.Path:
    """The real path (symlinks resolved) of a job's ``filePath``: absolute, or relative to
    ``books_dir``, inside which it must then stay; relative to the current directory when
    there is no ``books_dir``."""
    if not file_path or "\x00" in file_path:
        raise model.EpubError(f"invalid file path {file_path!r}")
    try:
        if books_dir is None:
            resolved = pathlib.Path(file_path).resolve()
        else:
            root = pathlib.Path(books_dir).resolve()
            # An absolute file_path replaces root in the join, and is then checked like any.
            resolved = (root / file_path).resolve()
            if not resolved.is_relative_to(root):
                raise model.EpubError(
                    f"path {file_path!r} is outside the books directory {books_dir!r}"
                )
        # Only now, so that nothing is revealed about files outside the books directory.
        if not resolved.exists():
            raise model.EpubError(f"no such file: {file_path}")
        if not resolved.is_file():
            raise model.EpubError(f"not a regular file: {file_path}")
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, on 3.11
        raise model.EpubError(f"cannot resolve path {file_path!r}: {error}") from None
    return resolved


def read_file(path: pathlib.Path, limits: model.Limits) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise model.EpubError(f"no such file: {path}") from None
    except OSError as error:
        raise model.EpubError(f"cannot open {path}: {error.strerror or error}") from None
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise model.EpubError(f"not a regular file: {path}")
        # The size is checked again after reading: the file may grow in between.
        size = status.st_size
        data = b""
        if size <= limits.max_file_bytes:
            data = file.read(limits.max_file_bytes + 1)
            size = len(data)
    if size > limits.max_file_bytes:
        raise model.EpubError(
            f"EPUB file is {model.size(size)}, over the {model.size(limits.max_file_bytes)} limit"
        )
    return data


def check_archive(data: bytes, limits: model.Limits) -> dict[str, bytes]:
    """Every check on the zip itself; returns the entries that may be XML, by name."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if data.startswith(b"PK\x03\x04"):
            raise model.EpubError("not an EPUB: the zip archive is truncated or damaged")
        raise model.EpubError("not an EPUB: the file is not a zip archive")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as error:  # BadZipFile, but also EOFError, ValueError, OverflowError...
        raise model.EpubError(
            f"not an EPUB: the zip archive is damaged ({model.describe(error)})"
        ) from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise model.EpubError(
                f"EPUB has {len(entries)} entries, over the limit of {limits.max_entries}"
            )
        seen: set[str] = set()
        for entry in entries:
            problem = _name_problem(entry.orig_filename)
            if problem:
                raise model.EpubError(problem)
            if entry.filename in seen:
                # Two entries of one name: a checker may read one and a parser the other.
                raise model.EpubError(f"EPUB has two entries named {entry.filename!r}")
            seen.add(entry.filename)
            if entry.flag_bits & 0x1:
                raise model.EpubError(f"EPUB entry {entry.filename!r} is encrypted")
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


def _check_declared_sizes(entries: list[zipfile.ZipInfo], limits: model.Limits) -> None:
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_uncompressed_bytes:
        raise model.EpubError(
            f"EPUB would unpack to {model.size(total)},"
            f" over the {model.size(limits.max_uncompressed_bytes)} limit"
        )
    for entry in entries:
        if entry.file_size < limits.ratio_check_min_bytes:
            continue
        ratio = entry.file_size / max(entry.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise model.EpubError(
                f"EPUB entry {entry.filename!r} would expand {ratio:.0f} times"
                f" (to {model.size(entry.file_size)}), over the limit of"
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
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], limits: model.Limits
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
                        raise model.EpubError(
                            f"XML in {entry.filename} declares entities (DOCTYPE/ENTITY),"
                            " which are refused"
                        )
                    else:
                        tail = chunk[-_RAW_OVERLAP:]
        except model.EpubError:
            raise
        except Exception as error:  # zlib, bz2, lzma, CRC and header errors alike
            raise model.EpubError(
                f"EPUB entry {entry.filename!r} is damaged: {model.describe(error)}"
            ) from None
        if inflated > entry.file_size:
            raise model.EpubError(
                f"EPUB entry {entry.filename!r} holds more data than its header declares"
            )
        if inflated > budget:
            raise model.EpubError(
                "EPUB would unpack to more than the"
                f" {model.size(limits.max_uncompressed_bytes)} limit"
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


def encodings(name: str, data: bytes) -> list[str]:
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
                raise model.EpubError(
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
    views += [data.decode(encoding, errors="replace") for encoding in encodings(name, data)]
    for view in views:
        for match in _DECLARATION.finditer(view):
            if match.group(1).upper() == "ENTITY" or _has_internal_subset(view, match.end()):
                raise model.EpubError(
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


def xml_parser(*, recover: bool = False) -> typing.Any:
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
    """The root element of an entry, parsed as leniently as the package reader parses it."""
    if name not in markup:
        raise model.EpubError(f"EPUB entry {name} is not XML")
    try:
        root = lxml.etree.fromstring(markup[name], parser=xml_parser(recover=True))
    except lxml.etree.LxmlError as error:
        raise model.EpubError(f"EPUB entry {name} is not well-formed XML: {error}") from None
    if root is None:
        raise model.EpubError(f"EPUB entry {name} is not well-formed XML")
    return root


def check_container(markup: dict[str, bytes]) -> str:
    """The path of the package document (OPF) that will be read."""
    if CONTAINER_PATH not in markup:
        raise model.EpubError(f"EPUB is missing {CONTAINER_PATH}")
    root = _parse_xml(CONTAINER_PATH, markup)
    paths = [
        rootfile.get("full-path") or ""
        for rootfile in root.iter(f"{{{_CONTAINER_NS}}}rootfile")
        if rootfile.get("media-type") == _PACKAGE_MEDIA_TYPE
    ]
    if not paths:
        raise model.EpubError(f"EPUB {CONTAINER_PATH} names no package document (OPF)")
    # Readers take the last one; the path is normalised before it is looked up.
    package_path = posixpath.normpath(paths[-1])
    if package_path not in markup:
        raise model.EpubError(
            f"EPUB {CONTAINER_PATH} names {paths[-1]!r} as the package document,"
            " which is not in the book"
        )
    return package_path


def check_package(package_path: str, markup: dict[str, bytes]) -> str | None:
    """Checks that the package document has the parts a book needs; returns its
    unique-identifier."""
    root = _parse_xml(package_path, markup)
    if root.tag != f"{{{OPF_NS}}}package":
        raise model.EpubError(f"EPUB package document {package_path} is not an OPF <package>")
    for part in ("metadata", "manifest", "spine"):
        if root.find(f"{{{OPF_NS}}}{part}") is None:
            raise model.EpubError(f"EPUB package document {package_path} has no <{part}>")
    unique_id = root.get("unique-identifier")
    return str(unique_id) if unique_id else None


def check_not_encrypted(markup: dict[str, bytes]) -> None:
    """Refuse DRM: encrypted text would come out as garbage. Obfuscated fonts are fine."""
    if ENCRYPTION_PATH not in markup:
        return
    root = _parse_xml(ENCRYPTION_PATH, markup)
    for reference in root.iter("{*}CipherReference"):
        target = urllib.parse.unquote(reference.get("URI") or "").lower()
        if target.endswith((".xhtml", ".html", ".htm", ".xml", ".opf", ".ncx")):
            raise model.EpubError(
                f"EPUB is DRM-protected: its text is encrypted ({ENCRYPTION_PATH})"
            )
