"""Odd but readable EPUB files: each reproduces one quirk of books found in the wild, or the
shape one common generator gives its books. Common readers open all of them, so the book
pipeline must read them too, with the chapters and metadata a reader would show.

Every maker writes one book into ``folder`` and returns its path with what reading it must
give (``Expected``). The books are written here from scratch; none is copied from anyone's.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import pathlib

import hostile_epubs as make

DC = 'xmlns:dc="http://purl.org/dc/elements/1.1/"'
OPF_NS = 'xmlns:opf="http://www.idpf.org/2007/opf"'
XHTML_DOCTYPE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN"'
    ' "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">'
)
NCX_MEDIA = "application/x-dtbncx+xml"


@dataclasses.dataclass(frozen=True)
class Expected:
    title: str
    chapters: tuple[str, ...]  # chapter titles, in reading order
    # A phrase each chapter's text must hold, in the same order.
    phrases: tuple[str, ...]
    authors: tuple[str, ...] = ()
    language: str | None = "en"
    identifier: str | None = None


def metadata(
    title: str,
    *,
    identifier: str = "quirk-1",
    language: str = "en",
    authors: collections.abc.Sequence[str] = (),
) -> str:
    creators = "".join(f"<dc:creator>{name}</dc:creator>" for name in authors)
    return (
        f"<dc:title>{title}</dc:title>{creators}<dc:language>{language}</dc:language>"
        f'<dc:identifier id="id">{identifier}</dc:identifier>'
    )


def chapter(title: str, text: str, *, heading: str = "h1") -> str:
    return make.xhtml(
        f"<{heading}>{title}</{heading}><p>{text}</p>", head=f"<title>{title}</title>"
    )


def ncx(points: collections.abc.Sequence[tuple[str, str]], uid: str = "quirk-1") -> str:
    navs = "".join(
        f'<navPoint id="n{number}" playOrder="{number}"><navLabel><text>{label}</text></navLabel>'
        f'<content src="{src}"/></navPoint>'
        for number, (label, src) in enumerate(points, 1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
        f'<head><meta name="dtb:uid" content="{uid}"/></head>'
        f"<docTitle><text>x</text></docTitle><navMap>{navs}</navMap></ncx>\n"
    )


def nav(points: collections.abc.Sequence[tuple[str, str]]) -> str:
    links = "".join(f'<li><a href="{href}">{label}</a></li>' for label, href in points)
    return make.xhtml(f'<nav epub:type="toc" id="toc"><h1>Contents</h1><ol>{links}</ol></nav>')


# --- Quirks of hrefs and ids -------------------------------------------------------------------


def fragment_hrefs(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """Manifest hrefs with a ``#fragment`` (one file listed twice, as some DocBook-based
    builds do); the file is read once."""
    opf = make.package(
        metadata=metadata("Fragments"),
        manifest=make.item("intro", "intro.xhtml#start")
        + make.item("about", "about.xhtml#o8")
        + make.item("about-2", "about.xhtml#o9"),
        spine='<itemref idref="intro"/><itemref idref="about"/><itemref idref="about-2"/>',
    )
    files = {
        "OEBPS/intro.xhtml": chapter("Introduction", "Fragments are part of the link."),
        "OEBPS/about.xhtml": chapter("About", "This manual is about fragments."),
    }
    expected = Expected(
        "Fragments",
        ("Introduction", "About"),
        ("part of the link", "about fragments"),
        identifier="quirk-1",
    )
    return make.write_book(folder / "fragments.epub", opf, files), expected


def percent_encoded_hrefs(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """Hrefs percent-encoded (spaces, non-ASCII), as URLs must be, for files stored with
    their plain names."""
    opf = make.package(
        metadata=metadata("Encoded Names"),
        manifest=make.item("one", "chapter%20one.xhtml") + make.item("two", "%C3%A9t%C3%A9.xhtml"),
        spine='<itemref idref="one"/><itemref idref="two"/>',
    )
    files = {
        "OEBPS/chapter one.xhtml": chapter("Chapter One", "A name with a space in it."),
        "OEBPS/été.xhtml": chapter("Summer", "A name with accents in it."),
    }
    expected = Expected(
        "Encoded Names", ("Chapter One", "Summer"), ("space in it", "accents in it")
    )
    return make.write_book(folder / "encoded.epub", opf, files), expected


def wrong_case_hrefs(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """Hrefs whose case differs from the stored names (made on a case-insensitive disk)."""
    opf = make.package(
        metadata=metadata("Case Folding"),
        manifest=make.item("a", "Text/Chapter1.XHTML") + make.item("b", "text/chapter2.xhtml"),
        spine='<itemref idref="a"/><itemref idref="b"/>',
    )
    files = {
        "OEBPS/text/chapter1.xhtml": chapter("First", "Upper case in the manifest."),
        "OEBPS/Text/Chapter2.xhtml": chapter("Second", "Upper case in the archive."),
    }
    expected = Expected("Case Folding", ("First", "Second"), ("in the manifest", "in the archive"))
    return make.write_book(folder / "case.epub", opf, files), expected


def dot_segments(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """A package document in a subfolder, hrefs with ``./`` and ``../`` segments, and a table
    of contents whose links need the same resolving."""
    opf = make.package(
        metadata=metadata("Dot Segments"),
        manifest=make.item("toc", "./../toc.ncx", NCX_MEDIA)
        + make.item("a", "../text/./a.xhtml")
        + make.item("b", "./../text/sub/../b.xhtml"),
        spine='<itemref idref="a"/><itemref idref="b"/>',
        spine_attributes=' toc="toc"',
        version="2.0",
    )
    files = {
        "OEBPS/toc.ncx": ncx([("Alpha", "text/a.xhtml"), ("Beta", "./text/b.xhtml#top")]),
        "OEBPS/text/a.xhtml": chapter("a", "The first file."),
        "OEBPS/text/b.xhtml": chapter("b", "The second file."),
    }
    path = make.write_book(folder / "dots.epub", opf, files, opf_path="OEBPS/package/content.opf")
    return path, Expected("Dot Segments", ("Alpha", "Beta"), ("first file", "second file"))


def duplicate_and_missing_ids(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """Two manifest items with one id (the first counts), an item without an id, and a
    spine entry naming an id no item has (skipped)."""
    opf = make.package(
        metadata=metadata("Ids"),
        manifest=make.item("same", "one.xhtml")
        + make.item("same", "two.xhtml")
        + '<item href="three.xhtml" media-type="application/xhtml+xml"/>'
        + make.item("four", "four.xhtml"),
        spine='<itemref idref="same"/><itemref idref="nowhere"/><itemref idref="four"/>',
    )
    files = {
        "OEBPS/one.xhtml": chapter("One", "The first item with the id."),
        "OEBPS/two.xhtml": chapter("Two", "The second item with the id."),
        "OEBPS/three.xhtml": chapter("Three", "No id at all."),
        "OEBPS/four.xhtml": chapter("Four", "A well-behaved item."),
    }
    expected = Expected("Ids", ("One", "Four"), ("first item", "well-behaved"))
    return make.write_book(folder / "ids.epub", opf, files), expected


def missing_files(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """Manifest items the archive lacks: an image (as in some DocBook builds) and a spine
    document; the book is read without them."""
    opf = make.package(
        metadata=metadata("Missing Files"),
        manifest=make.item("logo", "xslt/logo.png", "image/png")
        + make.item("a", "a.xhtml")
        + make.item("gone", "gone.xhtml")
        + make.item("b", "b.xhtml"),
        spine='<itemref idref="a"/><itemref idref="gone"/><itemref idref="b"/>',
    )
    files = {
        "OEBPS/a.xhtml": chapter("Present", "This file is here."),
        "OEBPS/b.xhtml": chapter("Also Present", "So is this one."),
    }
    expected = Expected("Missing Files", ("Present", "Also Present"), ("is here", "this one"))
    return make.write_book(folder / "missing.epub", opf, files), expected


# --- Tables of contents ------------------------------------------------------------------------


def ncx_without_nav(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """An EPUB 3 package with only an NCX: chapter titles come from it."""
    opf = make.package(
        metadata=metadata("Only NCX"),
        manifest=make.item("ncx", "toc.ncx", NCX_MEDIA)
        + make.item("a", "a.xhtml")
        + make.item("b", "b.xhtml"),
        spine='<itemref idref="a"/><itemref idref="b"/>',
        spine_attributes=' toc="ncx"',
    )
    files = {
        "OEBPS/toc.ncx": ncx([("The Beginning", "a.xhtml"), ("The End", "b.xhtml#x")]),
        "OEBPS/a.xhtml": make.xhtml("<p>No heading here.</p>"),
        "OEBPS/b.xhtml": make.xhtml("<p>Nor here.</p>"),
    }
    expected = Expected("Only NCX", ("The Beginning", "The End"), ("No heading", "Nor here"))
    return make.write_book(folder / "ncx-only.epub", opf, files), expected


def nav_without_ncx(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """An EPUB 2 package that ships an EPUB 3 navigation document and no NCX."""
    opf = make.package(
        metadata=metadata("Only Nav"),
        manifest=make.item("nav", "nav.xhtml", extra=' properties="nav"')
        + make.item("a", "a.xhtml")
        + make.item("b", "b.xhtml"),
        spine='<itemref idref="a"/><itemref idref="b"/>',
        version="2.0",
    )
    files = {
        "OEBPS/nav.xhtml": nav([("Morning", "a.xhtml"), ("Evening", "b.xhtml#end")]),
        "OEBPS/a.xhtml": make.xhtml("<p>The sun rises.</p>"),
        "OEBPS/b.xhtml": make.xhtml("<p>The sun sets.</p>"),
    }
    expected = Expected("Only Nav", ("Morning", "Evening"), ("sun rises", "sun sets"))
    return make.write_book(folder / "nav-only.epub", opf, files), expected


def nav_without_toc(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """A navigation document with no ``toc`` nav: titles come from the headings."""
    opf = make.package(
        metadata=metadata("Empty Nav"),
        manifest=make.item("nav", "nav.xhtml", extra=' properties="nav"')
        + make.item("a", "a.xhtml"),
        spine='<itemref idref="a"/>',
    )
    files = {
        "OEBPS/nav.xhtml": make.xhtml("<p>no navigation here</p>"),
        "OEBPS/a.xhtml": chapter("Heading Title", "Text under a heading."),
    }
    expected = Expected("Empty Nav", ("Heading Title",), ("under a heading",))
    return make.write_book(folder / "empty-nav.epub", opf, files), expected


# --- Documents -----------------------------------------------------------------------------------


def malformed_xhtml(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """Documents that are not well-formed XML: unclosed tags, HTML entities, bare ``&``."""
    opf = make.package(
        metadata=metadata("Tag Soup"),
        manifest=make.item("a", "a.xhtml") + make.item("b", "b.html", "text/html"),
        spine='<itemref idref="a"/><itemref idref="b"/>',
    )
    soup = (
        "<html><head><title>Soup</title></head><body><h1>Soup</h1>"
        "<p>Salt&nbsp;&amp; pepper<br>to taste & serve<p>Hot, with bread"
    )
    files = {
        "OEBPS/a.xhtml": soup,
        "OEBPS/b.html": "<HTML><BODY><H2>Loud</H2><P>Upper case tags &mdash; old HTML.</BODY>",
    }
    expected = Expected("Tag Soup", ("Soup", "Loud"), ("with bread", "old HTML"))
    return make.write_book(folder / "soup.epub", opf, files), expected


def lying_encodings(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """A document declared ISO-8859-1 that is UTF-8, and one declared UTF-8 that is
    Windows-1252: read as what they are, not as what they say."""
    opf = make.package(
        metadata=metadata("Lying Encodings"),
        manifest=make.item("a", "a.xhtml") + make.item("b", "b.xhtml"),
        spine='<itemref idref="a"/><itemref idref="b"/>',
    )
    says_latin = chapter("Café", "Crème brûlée for everyone.").replace(
        'encoding="utf-8"', 'encoding="iso-8859-1"'
    )
    says_utf8 = chapter("Naïve", "A façade of “smart” quotes.")
    files: dict[str, str | bytes] = {
        "OEBPS/a.xhtml": says_latin.encode("utf-8"),
        "OEBPS/b.xhtml": says_utf8.encode("cp1252"),
    }
    expected = Expected(
        "Lying Encodings", ("Café", "Naïve"), ("Crème brûlée", "façade of “smart” quotes")
    )
    return make.write_book(folder / "encodings.epub", opf, files), expected


def lying_language(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """A Japanese book whose package says ``en`` (as some converters write into every book
    they make): its script gives its language."""
    opf = make.package(
        metadata=metadata("小さな本"),
        manifest=make.item("a", "a.xhtml") + make.item("b", "b.xhtml"),
        spine='<itemref idref="a"/><itemref idref="b"/>',
    )
    files = {
        "OEBPS/a.xhtml": chapter("はじめに", "この本はとても小さいです。読んでください。"),
        "OEBPS/b.xhtml": chapter("おわりに", "最後まで読んでくれてありがとう。"),
    }
    expected = Expected(
        "小さな本", ("はじめに", "おわりに"), ("とても小さい", "ありがとう"), language="ja"
    )
    return make.write_book(folder / "language.epub", opf, files), expected


# --- Generators --------------------------------------------------------------------------------


def docbook_style(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """What DocBook XSL (and dblatex-era builds) produce: EPUB 2, ``.html`` names, an HTML
    table of contents first in the spine, an NCX, an XHTML 1.1 doctype, ``id`` attributes
    on everything, and no ``dc:creator``."""
    opf = (
        '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="bookid">'
        f'<metadata><dc:identifier {DC} id="bookid">_idm1234</dc:identifier>'
        f"<dc:title {DC}>The Project Manual</dc:title>"
        f"<dc:language {DC}>en</dc:language></metadata>"
        "<manifest>"
        f'<item id="ncxtoc" media-type="{NCX_MEDIA}" href="toc.ncx"/>'
        '<item id="htmltoc" media-type="application/xhtml+xml" href="bk01-toc.html"/>'
        '<item id="idm1" href="index.html" media-type="application/xhtml+xml"/>'
        '<item id="idm2" href="ch01.html" media-type="application/xhtml+xml"/>'
        '<item id="idm3" href="ch02.html" media-type="application/xhtml+xml"/>'
        '<item id="css" href="docbook.css" media-type="text/css"/>'
        "</manifest>"
        '<spine toc="ncxtoc"><itemref idref="htmltoc" linear="yes"/><itemref idref="idm1"/>'
        '<itemref idref="idm2"/><itemref idref="idm3"/></spine>'
        '<guide><reference href="bk01-toc.html" type="toc" title="Table of Contents"/></guide>'
        "</package>\n"
    )

    def page(title: str, body: str) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
            f'{XHTML_DOCTYPE}\n<html xmlns="http://www.w3.org/1999/xhtml"><head>'
            f'<title>{title}</title><meta name="generator" content="DocBook XSL Stylesheets"/>'
            f'</head><body><div class="chapter"><div class="titlepage"><h1 class="title">'
            f'<a id="idm9"></a>{title}</h1></div>{body}</div></body></html>\n'
        )

    files = {
        "OEBPS/toc.ncx": ncx(
            [
                ("The Project Manual", "index.html"),
                ("1. Getting Started", "ch01.html"),
                ("2. Going Further", "ch02.html#idm77"),
            ],
            uid="_idm1234",
        ),
        "OEBPS/bk01-toc.html": page(
            "Table of Contents", '<dl class="toc"><dt><a href="ch01.html">1.</a></dt></dl>'
        ),
        "OEBPS/index.html": page("The Project Manual", "<p>Copyright the authors.</p>"),
        "OEBPS/ch01.html": page("Chapter 1. Getting Started", "<p>Install the package.</p>"),
        "OEBPS/ch02.html": page("Chapter 2. Going Further", "<p>Configure the service.</p>"),
        "OEBPS/docbook.css": "body { margin: 0 }",
    }
    expected = Expected(
        "The Project Manual",
        ("Table of Contents", "The Project Manual", "1. Getting Started", "2. Going Further"),
        ("1.", "Copyright", "Install the package", "Configure the service"),
        identifier="_idm1234",
    )
    return make.write_book(folder / "docbook.epub", opf, files, opf_path="OEBPS/content.opf"), (
        expected
    )


def sphinx_style(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """What Sphinx's EPUB builder makes: EPUB 3 with ``nav.xhtml`` and ``toc.ncx``, the
    package document at the archive root beside the documents, a generated index."""
    manifest = (
        make.item("ncx", "toc.ncx", NCX_MEDIA)
        + make.item("nav", "nav.xhtml", extra=' properties="nav"')
        + make.item("epub-0", "index.xhtml")
        + make.item("epub-1", "usage.xhtml")
        + make.item("epub-2", "genindex.xhtml")
    )
    opf = make.package(
        metadata=metadata(
            "Widget Documentation",
            identifier="urn:uuid:0f0e0d0c-0b0a-0908-0706-050403020100",
            authors=["The Widget Team"],
        )
        + '<meta property="dcterms:modified">2024-01-01T00:00:00Z</meta>',
        manifest=manifest,
        spine='<itemref idref="epub-0"/><itemref idref="epub-1"/>'
        '<itemref idref="epub-2" linear="no"/>',
        spine_attributes=' toc="ncx" page-progression-direction="ltr"',
    )
    files = {
        "toc.ncx": ncx([("Welcome", "index.xhtml"), ("Usage", "usage.xhtml#usage")]),
        "nav.xhtml": nav([("Welcome", "index.xhtml"), ("Usage", "usage.xhtml#usage")]),
        "index.xhtml": make.xhtml(
            '<section id="welcome"><h1>Welcome<a class="headerlink" href="#welcome">¶</a></h1>'
            "<p>Widgets make things.</p></section>"
        ),
        "usage.xhtml": make.xhtml(
            '<section id="usage"><h1>Usage</h1><pre>widget --run\nwidget --stop</pre></section>'
        ),
        "genindex.xhtml": make.xhtml("<h1>Index</h1>"),
    }
    expected = Expected(
        "Widget Documentation",
        ("Welcome", "Usage"),
        ("Widgets make things", "widget --run\nwidget --stop"),
        authors=("The Widget Team",),
        identifier="urn:uuid:0f0e0d0c-0b0a-0908-0706-050403020100",
    )
    return make.write_book(folder / "sphinx.epub", opf, files, opf_path="content.opf"), expected


def pandoc_style(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """What pandoc makes: ``EPUB/`` folder, a title page, ``text/ch001.xhtml`` names,
    ``<section>`` chapters with ``epub:type``, and a nav that also lists landmarks."""
    opf = make.package(
        metadata=metadata("Notes on Rivers", authors=["A. Writer"], language="en-GB"),
        manifest=make.item("nav", "nav.xhtml", extra=' properties="nav"')
        + make.item("title_page", "text/title_page.xhtml")
        + make.item("ch001", "text/ch001.xhtml")
        + make.item("ch002", "text/ch002.xhtml"),
        spine='<itemref idref="title_page" linear="yes"/><itemref idref="nav" linear="no"/>'
        '<itemref idref="ch001"/><itemref idref="ch002"/>',
    )
    landmarks = (
        '<nav epub:type="landmarks" hidden="hidden"><ol>'
        '<li><a href="text/title_page.xhtml" epub:type="titlepage">Title Page</a></li>'
        "</ol></nav>"
    )
    files = {
        "EPUB/nav.xhtml": nav(
            [("Sources", "text/ch001.xhtml#sources"), ("Deltas", "text/ch002.xhtml#deltas")]
        ).replace("</body>", landmarks + "</body>"),
        "EPUB/text/title_page.xhtml": make.xhtml(
            '<section epub:type="titlepage"><h1 class="title">Notes on Rivers</h1>'
            '<p class="author">A. Writer</p></section>'
        ),
        "EPUB/text/ch001.xhtml": make.xhtml(
            '<section id="sources" epub:type="chapter"><h1>Sources</h1>'
            "<p>Every river starts small.</p></section>"
        ),
        "EPUB/text/ch002.xhtml": make.xhtml(
            '<section id="deltas" epub:type="chapter"><h1>Deltas</h1>'
            "<p>Every river ends wide.</p></section>"
        ),
    }
    expected = Expected(
        "Notes on Rivers",
        ("Notes on Rivers", "Sources", "Deltas"),
        ("A. Writer", "starts small", "ends wide"),
        authors=("A. Writer",),
        language="en-GB",
    )
    return make.write_book(
        folder / "pandoc.epub", opf, files, opf_path="EPUB/content.opf"
    ), expected


def calibre_style(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """What calibre's conversions look like: EPUB 2, files at the root, ``index_split_NNN``
    names, a title page made of an SVG cover, ``opf:`` attributes on the creator, and
    calibre's own metadata."""
    opf = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" unique-identifier="uuid_id"'
        ' version="2.0">'
        f"<metadata {DC} {OPF_NS}>"
        "<dc:title>A Converted Book</dc:title>"
        '<dc:creator opf:file-as="Author, Some" opf:role="aut">Some Author</dc:creator>'
        '<dc:identifier opf:scheme="calibre" id="calibre_id">1234</dc:identifier>'
        '<dc:identifier opf:scheme="uuid" id="uuid_id">5a6b7c8d-0000-4000-8000-000000000001'
        "</dc:identifier>"
        "<dc:language>fr</dc:language>"
        '<meta name="calibre:series" content="Conversions"/>'
        '<meta name="cover" content="cover"/>'
        "</metadata><manifest>"
        '<item href="cover.jpeg" id="cover" media-type="image/jpeg"/>'
        '<item href="titlepage.xhtml" id="titlepage" media-type="application/xhtml+xml"/>'
        '<item href="index_split_000.html" id="html1" media-type="application/xhtml+xml"/>'
        '<item href="index_split_001.html" id="html2" media-type="application/xhtml+xml"/>'
        f'<item href="toc.ncx" id="ncx" media-type="{NCX_MEDIA}"/>'
        '</manifest><spine toc="ncx"><itemref idref="titlepage"/><itemref idref="html1"/>'
        '<itemref idref="html2"/></spine>'
        '<guide><reference href="titlepage.xhtml" title="Cover" type="cover"/></guide>'
        "</package>\n"
    )
    cover_page = make.xhtml(
        '<div><svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 600 800">'
        '<image width="600" height="800" xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' xlink:href="cover.jpeg"/></svg></div>'
    )
    files: dict[str, str | bytes] = {
        "cover.jpeg": b"\xff\xd8\xff\xe0 not really a picture",
        "titlepage.xhtml": cover_page,
        "index_split_000.html": make.xhtml(
            '<p class="calibre1"><span class="bold">Premier</span></p>'
            '<p class="calibre2">Il était une fois un livre converti.</p>'
        ),
        "index_split_001.html": make.xhtml(
            '<p class="calibre1"><span class="bold">Second</span></p>'
            '<p class="calibre2">Puis il fut lu.</p>'
        ),
        "toc.ncx": ncx([("Premier", "index_split_000.html"), ("Second", "index_split_001.html")]),
    }
    expected = Expected(
        "A Converted Book",
        ("Premier", "Second"),
        ("Il était une fois", "Puis il fut lu"),
        authors=("Some Author",),
        language="fr",
        identifier="5a6b7c8d-0000-4000-8000-000000000001",
    )
    return make.write_book(folder / "calibre.epub", opf, files, opf_path="content.opf"), expected


def sigil_style(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """What Sigil saves: ``OEBPS/Text/Section0001.xhtml``, ``../Styles/`` links, hrefs
    relative to the OPF with capitalised folders, and an NCX in the OPF folder."""
    opf = make.package(
        metadata=metadata("Edited by Hand", authors=["Ed Itor"], language="de"),
        manifest=make.item("ncx", "toc.ncx", NCX_MEDIA)
        + make.item("Section0001.xhtml", "Text/Section0001.xhtml")
        + make.item("Section0002.xhtml", "Text/Section0002.xhtml")
        + make.item("style.css", "Styles/style.css", "text/css"),
        spine='<itemref idref="Section0001.xhtml"/><itemref idref="Section0002.xhtml"/>',
        spine_attributes=' toc="ncx"',
        version="2.0",
    )
    head = '<title></title><link href="../Styles/style.css" type="text/css" rel="stylesheet"/>'
    files = {
        "OEBPS/toc.ncx": ncx(
            [("Anfang", "Text/Section0001.xhtml"), ("Schluss", "Text/Section0002.xhtml")]
        ),
        "OEBPS/Text/Section0001.xhtml": make.xhtml(
            "<h1>Anfang</h1><p>Am Anfang war das Wort.</p>", head=head
        ),
        "OEBPS/Text/Section0002.xhtml": make.xhtml(
            "<h1>Schluss</h1><p>Und dann war Schluss.</p>", head=head
        ),
        "OEBPS/Styles/style.css": "h1 { text-align: center }",
    }
    expected = Expected(
        "Edited by Hand",
        ("Anfang", "Schluss"),
        ("Anfang war das Wort", "dann war Schluss"),
        authors=("Ed Itor",),
        language="de",
    )
    return make.write_book(folder / "sigil.epub", opf, files), expected


def indesign_style(folder: pathlib.Path) -> tuple[pathlib.Path, Expected]:
    """What InDesign exports: ``OEBPS/`` with ``.xhtml`` per story, metadata padded with
    whitespace and line breaks, ``<span>`` soup with ``CharOverride`` classes, and an
    EPUB 3 nav that points into the middle of files."""
    opf = make.package(
        metadata="<dc:title>\n   A Designed   Book\n</dc:title>"
        "<dc:creator>\n Des Igner </dc:creator>"
        '<dc:language>en-US</dc:language><dc:identifier id="id">urn:uuid:'
        "11111111-2222-4333-8444-555555555555</dc:identifier>"
        '<meta property="dcterms:modified">2023-05-05T05:05:05Z</meta>',
        manifest=make.item("toc", "toc.xhtml", extra=' properties="nav"')
        + make.item("Story", "Story.xhtml")
        + make.item("Story-1", "Story-1.xhtml"),
        spine='<itemref idref="Story"/><itemref idref="Story-1"/>',
    )
    files = {
        "OEBPS/toc.xhtml": nav(
            [("Opening", "Story.xhtml#_idParaDest-1"), ("Closing", "Story-1.xhtml")]
        ),
        "OEBPS/Story.xhtml": make.xhtml(
            '<div class="_idGenObjectStyleOverride-1"><p class="Body" id="_idParaDest-1">'
            '<span class="CharOverride-1">Lay</span><span class="CharOverride-2">out</span>'
            " matters here.</p></div>"
        ),
        "OEBPS/Story-1.xhtml": make.xhtml('<p class="Body">The last spread.</p>'),
    }
    expected = Expected(
        "A Designed Book",
        ("Opening", "Closing"),
        ("Layout matters", "last spread"),
        authors=("Des Igner",),
        language="en-US",
        identifier="urn:uuid:11111111-2222-4333-8444-555555555555",
    )
    return make.write_book(folder / "indesign.epub", opf, files), expected


QUIRKS: tuple[collections.abc.Callable[[pathlib.Path], tuple[pathlib.Path, Expected]], ...] = (
    fragment_hrefs,
    percent_encoded_hrefs,
    wrong_case_hrefs,
    dot_segments,
    duplicate_and_missing_ids,
    missing_files,
    ncx_without_nav,
    nav_without_ncx,
    nav_without_toc,
    malformed_xhtml,
    lying_encodings,
    lying_language,
    docbook_style,
    sphinx_style,
    pandoc_style,
    calibre_style,
    sigil_style,
    indesign_style,
)
