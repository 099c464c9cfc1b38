"""EPUB files for the demo and the tests, written from scratch (zipfile and XML text).

``write_epub`` makes a valid EPUB 3 (navigation document) or EPUB 2 (NCX) book from plain
text chapters; ``write_sample_library`` writes a small library with real prose: two English
books retold from Python's own documentation (``pydoc_data``, read at run time, so nothing
is copied into this repository), and a Russian, a Chinese and a Japanese one written for
this project.

Output is byte-for-byte reproducible: fixed timestamps and identifiers derived from the
title, so a sample's checksum only changes when its content does.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import html
import importlib.resources
import pathlib
import pydoc_data.topics
import re
import typing
import uuid
import zipfile

# Zip timestamps and the EPUB 3 modification date: fixed, for reproducible files.
_TIMESTAMP: typing.Final = (2024, 1, 1, 0, 0, 0)
_MODIFIED: typing.Final = "2024-01-01T00:00:00Z"
_CONTAINER: typing.Final = """<?xml version="1.0" encoding="utf-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""
_STYLE: typing.Final = "body { margin: 1em; line-height: 1.4; }\nh1 { font-size: 1.6em; }\n"
_XHTML11_DOCTYPE: typing.Final = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN"'
    ' "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">'
)


def write_epub(
    path: pathlib.Path | str,
    *,
    title: str,
    authors: collections.abc.Sequence[str],
    language: str,
    chapters: collections.abc.Sequence[tuple[str, str]],
    identifier: str | None = None,
    publisher: str | None = None,
    date: str | None = None,
    description: str | None = None,
    version: int = 3,
) -> pathlib.Path:
    """Write a book; each chapter is ``(title, text)`` with paragraphs separated by blank
    lines (a single newline inside a paragraph becomes a ``<br/>``). Each chapter document
    starts with its title as ``<h1>``, and the table of contents names every chapter."""
    if version not in (2, 3):
        raise ValueError(f"EPUB version must be 2 or 3, not {version!r}")
    path = pathlib.Path(path)
    identifier = identifier or f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, title)}"
    documents = [f"text/chapter-{number:03}.xhtml" for number in range(1, len(chapters) + 1)]
    files: list[tuple[str, str]] = [
        ("META-INF/container.xml", _CONTAINER),
        (
            "OEBPS/content.opf",
            _package(
                version=version,
                title=title,
                authors=authors,
                language=language,
                identifier=identifier,
                publisher=publisher,
                date=date,
                description=description,
                documents=documents,
            ),
        ),
        ("OEBPS/style.css", _STYLE),
    ]
    if version == 3:
        files.append(("OEBPS/nav.xhtml", _nav(title, language, chapters, documents)))
    else:
        files.append(("OEBPS/toc.ncx", _ncx(title, language, identifier, chapters, documents)))
    for document, (chapter_title, text) in zip(documents, chapters, strict=True):
        files.append((f"OEBPS/{document}", _chapter(version, language, chapter_title, text)))
    write_zip(path, [(name, content.encode("utf-8")) for name, content in files])
    return path


def write_zip(
    path: pathlib.Path, entries: collections.abc.Sequence[tuple[str, bytes]]
) -> pathlib.Path:
    """An EPUB container: ``mimetype`` first and uncompressed (the OCF rule that lets tools
    recognise the format from the first bytes), then ``entries`` deflated, in order."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(_entry("mimetype", zipfile.ZIP_STORED), "application/epub+zip")
        for name, content in entries:
            archive.writestr(_entry(name, zipfile.ZIP_DEFLATED), content)
    return path


def _entry(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


def _escape(value: str) -> str:
    return html.escape(value, quote=True)


def _package(
    *,
    version: int,
    title: str,
    authors: collections.abc.Sequence[str],
    language: str,
    identifier: str,
    publisher: str | None,
    date: str | None,
    description: str | None,
    documents: list[str],
) -> str:
    metadata = [
        f'<dc:identifier id="book-id">{_escape(identifier)}</dc:identifier>',
        f"<dc:title>{_escape(title)}</dc:title>",
        f"<dc:language>{_escape(language)}</dc:language>",
    ]
    for number, author in enumerate(authors, start=1):
        role = ' opf:role="aut"' if version == 2 else ""
        metadata.append(f'<dc:creator id="creator-{number}"{role}>{_escape(author)}</dc:creator>')
    for name, value in (("publisher", publisher), ("date", date), ("description", description)):
        if value is not None:
            metadata.append(f"<dc:{name}>{_escape(value)}</dc:{name}>")
    manifest = ['<item id="style" href="style.css" media-type="text/css"/>']
    if version == 3:
        metadata.append(f'<meta property="dcterms:modified">{_MODIFIED}</meta>')
        manifest.append(
            '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        )
        spine_attributes = ""
    else:
        manifest.append('<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>')
        spine_attributes = ' toc="ncx"'
    spine = []
    for number, document in enumerate(documents, start=1):
        manifest.append(
            f'<item id="chapter-{number}" href="{document}" media-type="application/xhtml+xml"/>'
        )
        spine.append(f'<itemref idref="chapter-{number}"/>')
    namespaces = 'xmlns:dc="http://purl.org/dc/elements/1.1/"'
    if version == 2:
        namespaces += ' xmlns:opf="http://www.idpf.org/2007/opf"'
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<package xmlns="http://www.idpf.org/2007/opf" version="{version}.0"'
        f' unique-identifier="book-id" xml:lang="{_escape(language)}">\n'
        f"  <metadata {namespaces}>\n    "
        + "\n    ".join(metadata)
        + "\n  </metadata>\n  <manifest>\n    "
        + "\n    ".join(manifest)
        + f"\n  </manifest>\n  <spine{spine_attributes}>\n    "
        + "\n    ".join(spine)
        + "\n  </spine>\n</package>\n"
    )


def _chapter(version: int, language: str, title: str, text: str) -> str:
    paragraphs = [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]
    body = "\n".join(
        "<p>" + "<br/>".join(_escape(line) for line in paragraph.splitlines()) + "</p>"
        for paragraph in paragraphs
    )
    doctype = "<!DOCTYPE html>" if version == 3 else _XHTML11_DOCTYPE
    namespaces = 'xmlns="http://www.w3.org/1999/xhtml"'
    if version == 3:
        namespaces += f' xmlns:epub="http://www.idpf.org/2007/ops" lang="{_escape(language)}"'
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n{doctype}\n'
        f'<html {namespaces} xml:lang="{_escape(language)}">\n'
        f"<head><title>{_escape(title)}</title>"
        '<link rel="stylesheet" type="text/css" href="../style.css"/></head>\n'
        f"<body>\n<h1>{_escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _nav(
    title: str,
    language: str,
    chapters: collections.abc.Sequence[tuple[str, str]],
    documents: list[str],
) -> str:
    items = "\n".join(
        f'<li><a href="{document}">{_escape(chapter_title)}</a></li>'
        for document, (chapter_title, _) in zip(documents, chapters, strict=True)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"'
        f' lang="{_escape(language)}" xml:lang="{_escape(language)}">\n'
        f"<head><title>{_escape(title)}</title></head>\n"
        f'<body>\n<nav epub:type="toc" id="toc">\n<h1>{_escape(title)}</h1>\n<ol>\n{items}\n'
        "</ol>\n</nav>\n</body>\n</html>\n"
    )


def _ncx(
    title: str,
    language: str,
    identifier: str,
    chapters: collections.abc.Sequence[tuple[str, str]],
    documents: list[str],
) -> str:
    points = "\n".join(
        f'<navPoint id="point-{number}" playOrder="{number}">'
        f"<navLabel><text>{_escape(chapter_title)}</text></navLabel>"
        f'<content src="{document}"/></navPoint>'
        for number, (document, (chapter_title, _)) in enumerate(
            zip(documents, chapters, strict=True), start=1
        )
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"'
        f' xml:lang="{_escape(language)}">\n'
        f'<head><meta name="dtb:uid" content="{_escape(identifier)}"/>'
        '<meta name="dtb:depth" content="1"/></head>\n'
        f"<docTitle><text>{_escape(title)}</text></docTitle>\n"
        f"<navMap>\n{points}\n</navMap>\n</ncx>\n"
    )


# --- The sample library --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SampleBook:
    """What ``write_sample_library`` writes for one book: the arguments of ``write_epub``."""

    file_name: str
    title: str
    authors: tuple[str, ...]
    language: str
    chapters: tuple[tuple[str, str], ...]
    version: int
    publisher: str | None = "Jobqueue Demo Press"
    date: str | None = "2024-01-01"
    description: str | None = None

    def write(self, folder: pathlib.Path) -> pathlib.Path:
        return write_epub(
            folder / self.file_name,
            title=self.title,
            authors=self.authors,
            language=self.language,
            chapters=self.chapters,
            publisher=self.publisher,
            date=self.date,
            description=self.description,
            version=self.version,
        )


def write_sample_library(folder: pathlib.Path) -> list[pathlib.Path]:
    """Write every sample book into ``folder`` (created if needed); their paths, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    return [book.write(folder) for book in sample_books()]


def sample_books() -> list[SampleBook]:
    return [
        SampleBook(
            file_name="python-language-reference-retold.epub",
            title="The Python Language Reference, Retold",
            authors=("Jobqueue Demo", "The Python Documentation Authors"),
            language="en",
            chapters=_topic_chapters(_LANGUAGE_TOPICS),
            version=3,
            description=(
                "<p>How Python reads, names and runs a program: <b>expressions</b>,"
                " statements and the execution model.</p><p>Rebuilt from the pydoc topics.</p>"
            ),
        ),
        SampleBook(
            file_name="python-builtin-types-retold.epub",
            title="Python's Built-in Types, Retold",
            authors=("Jobqueue Demo", "The Python Documentation Authors"),
            language="en",
            chapters=_topic_chapters(_TYPE_TOPICS),
            version=2,
            description="Sequences, strings, mappings and the standard type hierarchy.",
        ),
        SampleBook(
            file_name="smotritel-mayaka.epub",
            title="Смотритель маяка",
            authors=("Анна Северова",),
            language="ru",
            chapters=_chapters_file("lighthouse.ru.txt"),
            version=2,
            description="Короткая повесть о тумане, письме и свете маяка.",
        ),
        SampleBook(
            file_name="shan-zhong-de-tu-shu-guan.epub",
            title="山中的图书馆",
            authors=("林晓雨", "Jobqueue Demo"),
            language="zh",
            chapters=_chapters_file("library.zh.txt"),
            version=3,
            description="一个关于山间小图书馆和借书人的短篇故事。",
        ),
        SampleBook(
            file_name="yuki-no-eki.epub",
            title="雪の駅",
            authors=("小野 さくら",),
            language="ja",
            chapters=_chapters_file("station.ja.txt"),
            version=2,
            description="大雪の朝、山あいの小さな駅の駅長と、一人で旅をする女の子の話。",
        ),
    ]


# Topic keys of ``pydoc_data.topics.topics`` in reading order. Topics that other topics
# already contain (``compound`` holds ``if``, ``while``, ``try``...) are left out.
_LANGUAGE_TOPICS: typing.Final = (
    "identifiers",
    "id-classes",
    "atom-literals",
    "strings",
    "numbers",
    "integers",
    "floating",
    "imaginary",
    "execmodel",
    "atom-identifiers",
    "attribute-references",
    "subscriptions",
    "slicings",
    "calls",
    "await",
    "power",
    "unary",
    "binary",
    "shifting",
    "bitwise",
    "comparisons",
    "booleans",
    "lambda",
    "exprlists",
    "operator-summary",
    "assert",
    "assignment",
    "augassign",
    "pass",
    "del",
    "return",
    "yield",
    "raise",
    "break",
    "continue",
    "import",
    "global",
    "nonlocal",
    "compound",
)
_TYPE_TOPICS: typing.Final = (
    "truth",
    "objects",
    "typesseq",
    "typesseq-mutable",
    "string-methods",
    "formatstrings",
    "typesmapping",
    "typesmodules",
    "typesfunctions",
    "typesmethods",
    "bltin-code-objects",
    "bltin-type-objects",
    "bltin-null-object",
    "bltin-ellipsis-object",
    "specialattrs",
    "types",
)
_CHAPTER_WORDS: typing.Final = 3000
_LONGEST_CHAPTER_WORDS: typing.Final = 5000
_UNDERLINE = re.compile(r"[*=~^-]+")


def _topic_paragraphs(raw: str) -> list[str]:
    """A pydoc topic as paragraphs: its title underlines dropped, wrapped lines joined."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw.strip()):
        lines = [line.strip() for line in block.splitlines()]
        paragraph = " ".join(line for line in lines if line and not _UNDERLINE.fullmatch(line))
        if paragraph:
            paragraphs.append(paragraph)
    return paragraphs


def _topic_chapters(keys: collections.abc.Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Topics grouped into chapters of a few thousand words: a chapter ends at the first
    topic boundary after ``_CHAPTER_WORDS`` words, or inside a very long topic. A chapter
    is named after the topic it starts with."""
    topics = pydoc_data.topics.topics
    chapters: list[tuple[str, str]] = []
    title = ""
    paragraphs: list[str] = []
    words = 0

    def close() -> None:
        nonlocal paragraphs, words
        if paragraphs:
            chapters.append((title, "\n\n".join(paragraphs)))
        paragraphs, words = [], 0

    for key in keys:
        if key not in topics:  # topics change between Python versions; skip what is gone
            continue
        heading, *body = _topic_paragraphs(topics[key])
        if words >= _CHAPTER_WORDS:
            close()
        if paragraphs:
            paragraphs.append(heading)
        else:
            title = heading  # and the chapter's <h1>: not repeated as a paragraph
        for paragraph in body:
            if words >= _LONGEST_CHAPTER_WORDS:
                close()
                title = f"{heading} (continued)"
            paragraphs.append(paragraph)
            words += len(paragraph.split())
    close()
    return tuple(chapters)


def _chapters_file(name: str) -> tuple[tuple[str, str], ...]:
    """The chapters of a sample text shipped in ``samples/`` (written for this project, not
    taken from any published text): each starts with a ``# title`` line; paragraphs are
    separated by blank lines."""
    text = importlib.resources.files("jobqueue_books").joinpath("samples", name).read_text("utf-8")
    chapters = []
    for block in re.split(r"^# ", text, flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        chapters.append((title.strip(), body.strip()))
    return tuple(chapters)
