"""Hostile and odd EPUB files for the tests of ``jobqueue.books.epub``.

Each maker writes one file into ``folder`` and returns its path. Most start from a small
valid book (``valid_book``) and change one thing, so the only reason to refuse the result
is the one under test. ``write_book`` builds a book from a package document and files
given as text, for the odd-but-valid cases (fallback titles, non-linear items...).
"""

from __future__ import annotations

import collections.abc
import pathlib
import struct
import warnings
import zipfile

from jobqueue_books import samples

MIB = 1024 * 1024
CHAPTERS = (
    ("The First Chapter", "It begins with a sentence.\n\nThen another paragraph."),
    ("The Second Chapter", "The middle of the story."),
)
CONTAINER = """<?xml version="1.0" encoding="utf-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="{opf}" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""


def valid_book(folder: pathlib.Path, name: str = "valid.epub", version: int = 3) -> pathlib.Path:
    return samples.write_epub(
        folder / name,
        title="A Valid Book",
        authors=["Some Author"],
        language="en",
        chapters=CHAPTERS,
        version=version,
    )


def entries(path: pathlib.Path) -> list[tuple[str, bytes]]:
    """The entries of an EPUB except ``mimetype``, in order."""
    with zipfile.ZipFile(path) as archive:
        return [
            (info.filename, archive.read(info))
            for info in archive.infolist()
            if info.filename != "mimetype"
        ]


def rewrite(
    source: pathlib.Path,
    target: pathlib.Path,
    *,
    replace: collections.abc.Mapping[str, bytes | None] | None = None,
    add: collections.abc.Sequence[tuple[str, bytes]] = (),
) -> pathlib.Path:
    """A copy of ``source`` with entries replaced (``None`` removes one) and added."""
    replace = replace or {}
    kept: list[tuple[str, bytes]] = []
    for name, content in entries(source):
        new = replace.get(name, content)
        if new is not None:
            kept.append((name, new))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is the point, at times
        samples.write_zip(target, [*kept, *add])
    return target


# --- Not a (whole) zip ---------------------------------------------------------------------


def not_a_zip(folder: pathlib.Path) -> pathlib.Path:
    path = folder / "not-a-zip.epub"
    path.write_text("This is a plain text file that calls itself an EPUB.\n")
    return path


def truncated_zip(folder: pathlib.Path, keep: float = 0.5) -> pathlib.Path:
    data = valid_book(folder, "whole.epub").read_bytes()
    path = folder / "truncated.epub"
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def damaged_entry(folder: pathlib.Path) -> pathlib.Path:
    """The compressed bytes of a chapter overwritten: the central directory is intact."""
    path = valid_book(folder, "damaged.epub")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("OEBPS/text/chapter-001.xhtml")
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    data[start + 5 : start + 45] = b"\xff" * 40
    path.write_bytes(bytes(data))
    return path


# --- Container -----------------------------------------------------------------------------


def missing_container(folder: pathlib.Path) -> pathlib.Path:
    source = valid_book(folder)
    return rewrite(source, folder / "no-container.epub", replace={"META-INF/container.xml": None})


def container_to_missing_opf(folder: pathlib.Path) -> pathlib.Path:
    source = valid_book(folder)
    container = CONTAINER.format(opf="OEBPS/missing.opf").encode()
    return rewrite(
        source, folder / "missing-opf.epub", replace={"META-INF/container.xml": container}
    )


# --- Zip bombs and lies --------------------------------------------------------------------


def zip_bomb(folder: pathlib.Path, size: int = 320 * MIB) -> pathlib.Path:
    """A valid book plus ``size`` bytes of zeros, streamed through deflate at level 9 (a
    third of a second per 100 MiB; the file is about a thousandth of ``size``)."""
    path = rewrite(valid_book(folder), folder / "bomb.epub")
    zeros = bytes(MIB)
    with (
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("OEBPS/padding.bin", "w", force_zip64=True) as stream,
    ):
        for _ in range(size // MIB):
            stream.write(zeros)
    return path


def _central_records(data: bytes) -> collections.abc.Iterator[tuple[int, str]]:
    """(offset, name) of every central directory record."""
    end = data.rfind(b"PK\x05\x06")
    count, _, offset = struct.unpack_from("<HII", data, end + 10)
    for _ in range(count):
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, offset + 28)
        yield offset, data[offset + 46 : offset + 46 + name_length].decode()
        offset += 46 + name_length + extra_length + comment_length


def _patch(path: pathlib.Path, name: str, *, size: int | None = None, flags: int = 0) -> None:
    """Rewrite the declared uncompressed size, or set flag bits, of one entry in both its
    local header and its central directory record."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    central = next(offset for offset, found in _central_records(bytes(data)) if found == name)
    if size is not None:
        struct.pack_into("<I", data, local + 22, size)
        struct.pack_into("<I", data, central + 24, size)
    if flags:
        for position in (local + 6, central + 8):
            (current,) = struct.unpack_from("<H", data, position)
            struct.pack_into("<H", data, position, current | flags)
    path.write_bytes(bytes(data))


def lying_sizes(folder: pathlib.Path) -> pathlib.Path:
    """An entry of 8 MiB of zeros that declares 1000 bytes: under every size check."""
    path = rewrite(
        valid_book(folder), folder / "lying.epub", add=[("OEBPS/big.bin", bytes(8 * MIB))]
    )
    _patch(path, "OEBPS/big.bin", size=1000)
    return path


def encrypted_entry(folder: pathlib.Path) -> pathlib.Path:
    path = rewrite(valid_book(folder), folder / "encrypted.epub")
    _patch(path, "OEBPS/style.css", flags=0x1)
    return path


def compressed_too_well(folder: pathlib.Path) -> pathlib.Path:
    """2 MiB of zeros in an entry: a ratio near 1000, small in absolute terms."""
    return rewrite(
        valid_book(folder), folder / "ratio.epub", add=[("OEBPS/zeros.bin", bytes(2 * MIB))]
    )


# --- Entry names ---------------------------------------------------------------------------


def named_entry(folder: pathlib.Path, name: str) -> pathlib.Path:
    """A valid book plus one entry called ``name`` (``\\x00`` is patched in afterwards,
    since zipfile cuts names at a NUL when writing)."""
    placeholder = name.replace("\x00", "#")
    path = rewrite(valid_book(folder), folder / "named.epub", add=[(placeholder, b"owned")])
    if placeholder != name:
        raw = path.read_bytes()
        path.write_bytes(raw.replace(placeholder.encode(), name.encode()))
    return path


def duplicate_entry(folder: pathlib.Path) -> pathlib.Path:
    source = valid_book(folder)
    chapter = "OEBPS/text/chapter-001.xhtml"
    return rewrite(source, folder / "duplicate.epub", add=[(chapter, b"<html>other</html>")])


# --- Entities ------------------------------------------------------------------------------


def xxe_doctype(secret: pathlib.Path, root: str = "html") -> str:
    return f'<!DOCTYPE {root} [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'


def xxe_chapter(secret: pathlib.Path) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f"{xxe_doctype(secret)}\n"
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head>'
        "<body><h1>Leak</h1><p>&xxe;</p></body></html>\n"
    )


BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{n} "' + f"&lol{'' if n == 1 else n - 1};" * 10 + '">\n'
        for n in range(1, 10)
    )
    + ']>\n<html xmlns="http://www.w3.org/1999/xhtml"><body><p>&lol9;</p></body></html>\n'
)


def with_entry(
    folder: pathlib.Path, name: str, content: bytes, *, version: int = 3
) -> pathlib.Path:
    """A valid book with one entry's content replaced (or added)."""
    source = valid_book(folder, version=version)
    target = folder / f"with-{name.replace('/', '-')}"
    if name in dict(entries(source)):
        return rewrite(source, target, replace={name: content})
    return rewrite(source, target, add=[(name, content)])


def xxe_in_package(folder: pathlib.Path, secret: pathlib.Path) -> pathlib.Path:
    opf = dict(entries(valid_book(folder)))["OEBPS/content.opf"].decode()
    opf = opf.replace("?>\n", f"?>\n{xxe_doctype(secret, 'package')}\n", 1)
    opf = opf.replace("<dc:title>A Valid Book</dc:title>", "<dc:title>&xxe;</dc:title>")
    return with_entry(folder, "OEBPS/content.opf", opf.encode())


# --- Odd but valid books -------------------------------------------------------------------


def xhtml(body: str, *, head: str = "<title>x</title>", doctype: str = "<!DOCTYPE html>") -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n{doctype}\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
        f"<head>{head}</head><body>{body}</body></html>\n"
    )


def package(
    *,
    manifest: str,
    spine: str,
    metadata: str = '<dc:title>Odd Book</dc:title><dc:identifier id="id">odd-1</dc:identifier>',
    version: str = "3.0",
    unique_identifier: str = "id",
    spine_attributes: str = "",
) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<package xmlns="http://www.idpf.org/2007/opf" version="{version}"'
        f' unique-identifier="{unique_identifier}">'
        f'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">{metadata}</metadata>'
        f"<manifest>{manifest}</manifest><spine{spine_attributes}>{spine}</spine></package>\n"
    )


def item(
    identifier: str, href: str, media_type: str = "application/xhtml+xml", extra: str = ""
) -> str:
    return f'<item id="{identifier}" href="{href}" media-type="{media_type}"{extra}/>'


def write_book(
    path: pathlib.Path,
    opf: str,
    files: collections.abc.Mapping[str, str | bytes],
    *,
    opf_path: str = "OEBPS/content.opf",
) -> pathlib.Path:
    """A book from its package document and other files (text is written as UTF-8)."""
    contents = [("META-INF/container.xml", CONTAINER.format(opf=opf_path).encode())]
    contents.append((opf_path, opf.encode()))
    for name, content in files.items():
        contents.append((name, content.encode() if isinstance(content, str) else content))
    return samples.write_zip(path, contents)
