"""Text from a book's documents: XHTML parsed strictly (the HTML parser when it is not
well-formed, as reading systems do), reduced to paragraphs and lines; plain text of an HTML
fragment (a description). Input has passed ``safety`` already."""

from __future__ import annotations

import collections.abc
import html.parser
import re
import typing
import unicodedata

import lxml.etree
import lxml.html

from jobqueue_books.epub import model, safety

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


_SNIFFED_WIDE: typing.Final = ("utf-16", "utf-32", "cp500")


def decode(name: str, data: bytes) -> str:
    """The text of a document, in the encoding it really has, which is not always the one
    it declares: bytes that are valid UTF-8 are UTF-8 (a declared ISO-8859-1 or
    Windows-1252 is a common lie of converters), then each declared encoding is tried, and
    bytes that fit none are read as Windows-1252, the usual truth of such files. A byte
    order mark, or UTF-16/32 or EBCDIC detected from the first bytes, always wins."""
    candidates = safety.encodings(name, data)
    if candidates[0].startswith(_SNIFFED_WIDE) or data.startswith(b"\xef\xbb\xbf"):
        return data.decode(candidates[0], errors="replace")
    for encoding in ("utf-8", *candidates):
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("cp1252", errors="replace")


def utf8_without_declaration(name: str, data: bytes) -> bytes:
    """The document as UTF-8 with its XML declaration removed, so that a parser cannot
    choose an encoding other than the one ``decode`` found."""
    return _XML_DECLARATION.sub("", decode(name, data)).encode("utf-8")


def parse_document(name: str, data: bytes) -> typing.Any:
    """The root of an XHTML document, or ``None`` when it is empty. Strict XML first; a
    document that is not well-formed (often: HTML entities such as ``&nbsp;``, undefined
    without the DTD) is read again by the HTML parser, as reading systems do. Both read the
    text ``decode`` gives, never an encoding of their own choosing."""
    decoded = _XML_DECLARATION.sub("", decode(name, data))
    try:
        return lxml.etree.fromstring(decoded.encode("utf-8"), parser=safety.xml_parser())
    except lxml.etree.XMLSyntaxError:
        pass
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
        raise model.EpubError(f"EPUB document {name} cannot be parsed: {error}") from None


def _local_name(element: typing.Any) -> str:
    tag = element.tag
    return tag.rpartition("}")[2].lower() if isinstance(tag, str) else ""


def body(root: typing.Any) -> typing.Any:
    body = root.find(".//{*}body")
    return root if body is None else body


def text_parts(top: typing.Any) -> list[str]:
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


def assemble(parts: collections.abc.Iterable[str]) -> str:
    paragraphs = []
    for block in "".join(parts).split(_PARAGRAPH_MARK):
        lines = (" ".join(line.split()) for line in block.split(_LINE_MARK))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return unicodedata.normalize("NFC", "\n\n".join(paragraphs))


def first_heading(root: typing.Any) -> str | None:
    for heading in body(root).iter("{*}h1", "{*}h2", "{*}h3"):
        title = one_line(assemble(text_parts(heading)))
        if title:
            return title
    return None


def one_line(value: str) -> str:
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


def html_to_text(fragment: str) -> str:
    parser = _HtmlText()
    parser.feed(fragment)
    parser.close()
    return assemble(parser.parts)
