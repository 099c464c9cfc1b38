"""Reading EPUB files for ``parseBook`` (S15): the sample library survives a round trip in
every script, titles fall back sensibly, and every hostile file is refused with a clear
``EpubError`` that leaks nothing, before any parser could read outside the book."""

from __future__ import annotations

import collections.abc
import os
import pathlib
import random
import re
import unicodedata
import uuid
import zipfile

import hostile_epubs
import lxml.etree
import pytest

from jobqueue_books import epub, samples
from jobqueue_books.epub import extract

# --- The sample library -----------------------------------------------------------------


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[samples.SampleBook, epub.Book]]:
    folder = tmp_path_factory.mktemp("library")
    paths = samples.write_sample_library(folder)
    specs = samples.sample_books()
    assert [path.name for path in paths] == [spec.file_name for spec in specs]
    return {
        spec.file_name: (spec, epub.read_epub(path))
        for spec, path in zip(specs, paths, strict=True)
    }


def expected_text(title: str, text: str) -> str:
    """What a chapter written by ``write_epub`` reads back as: its ``<h1>`` title, then the
    paragraphs, whitespace folded, a single newline kept as a line break."""
    paragraphs = [title]
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [" ".join(line.split()) for line in paragraph.splitlines()]
        if any(lines):
            paragraphs.append("\n".join(line for line in lines if line))
    return unicodedata.normalize("NFC", "\n\n".join(paragraphs))


SAMPLE_NAMES = [spec.file_name for spec in samples.sample_books()]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_book_survives_a_round_trip(
    library: dict[str, tuple[samples.SampleBook, epub.Book]], name: str
) -> None:
    spec, book = library[name]
    assert book.title == spec.title
    assert book.authors == spec.authors
    assert book.language == spec.language
    assert book.publisher == spec.publisher
    assert book.date == spec.date
    assert book.identifier is not None
    assert book.identifier.startswith("urn:uuid:")
    assert [chapter.index for chapter in book.chapters] == list(range(len(spec.chapters)))
    assert [chapter.title for chapter in book.chapters] == [title for title, _ in spec.chapters]
    for chapter, (title, text) in zip(book.chapters, spec.chapters, strict=True):
        assert chapter.text == expected_text(title, text)
    assert book.words == sum(chapter.words for chapter in book.chapters)


def test_the_library_has_both_epub_versions(tmp_path: pathlib.Path) -> None:
    names = {}
    for path in samples.write_sample_library(tmp_path):
        with zipfile.ZipFile(path) as archive:
            names[path.name] = set(archive.namelist())
    versions = {
        name: (("OEBPS/nav.xhtml" in found), ("OEBPS/toc.ncx" in found))
        for name, found in names.items()
    }
    assert versions["python-language-reference-retold.epub"] == (True, False)
    assert versions["python-builtin-types-retold.epub"] == (False, True)
    assert versions["smotritel-mayaka.epub"] == (False, True)
    assert versions["shan-zhong-de-tu-shu-guan.epub"] == (True, False)


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        (
            "python-language-reference-retold.epub",
            "Assert statements are a convenient way to insert debugging assertions",
        ),
        ("python-builtin-types-retold.epub", "Any object can be tested for truth value"),
        ("smotritel-mayaka.epub", "Маяк стоял на самом краю мыса, там, где дорога кончалась"),
        ("smotritel-mayaka.epub", "«Приезжай. Я покажу тебе, как зажигают свет"),
        (
            "shan-zhong-de-tu-shu-guan.epub",
            "小镇的图书馆建在半山腰上，要走一百二十级石阶才能到达。",
        ),
        ("shan-zhong-de-tu-shu-guan.epub", "题目是《我最想去的地方》。"),
    ],
)
def test_sample_text_reads_back_in_its_own_script(
    library: dict[str, tuple[samples.SampleBook, epub.Book]], name: str, sentence: str
) -> None:
    _, book = library[name]
    assert any(sentence in chapter.text for chapter in book.chapters)


def test_word_counts_are_sensible_in_every_script(
    library: dict[str, tuple[samples.SampleBook, epub.Book]],
) -> None:
    for name in ("python-language-reference-retold.epub", "smotritel-mayaka.epub"):
        _, book = library[name]
        spaced = sum(len(chapter.text.split()) for chapter in book.chapters)
        assert 0.85 * spaced <= book.words <= 1.15 * spaced, name
    _, chinese = library["shan-zhong-de-tu-shu-guan.epub"]
    han = sum(len(re.findall(r"[\u4e00-\u9fff]", chapter.text)) for chapter in chinese.chapters)
    assert han > 400
    assert chinese.words == han  # one word per character, none for the punctuation
    english = library["python-language-reference-retold.epub"][1]
    assert english.words > 15_000
    assert all(2_000 < chapter.words < 6_000 for chapter in english.chapters)


def test_descriptions_lose_their_markup(
    library: dict[str, tuple[samples.SampleBook, epub.Book]],
) -> None:
    _, book = library["python-language-reference-retold.epub"]
    assert book.description == (
        "How Python reads, names and runs a program: expressions, statements and the"
        " execution model.\n\nRebuilt from the pydoc topics."
    )


def test_sample_files_are_reproducible(tmp_path: pathlib.Path) -> None:
    first = [path.read_bytes() for path in samples.write_sample_library(tmp_path / "a")]
    second = [path.read_bytes() for path in samples.write_sample_library(tmp_path / "b")]
    assert first == second


def test_write_epub_refuses_unknown_versions(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="must be 2 or 3"):
        samples.write_epub(
            tmp_path / "x.epub", title="x", authors=[], language="en", chapters=[], version=4
        )


# --- Titles, spine and text ----------------------------------------------------------------


@pytest.mark.parametrize(("version", "toc"), [(3, "OEBPS/nav.xhtml"), (2, "OEBPS/toc.ncx")])
def test_titles_come_from_the_table_of_contents(
    tmp_path: pathlib.Path, version: int, toc: str
) -> None:
    source = hostile_epubs.valid_book(tmp_path, version=version)
    original = dict(hostile_epubs.entries(source))[toc]
    renamed = original.replace(b"The First Chapter", b"Named by the Contents")
    assert renamed != original
    path = hostile_epubs.rewrite(source, tmp_path / "renamed.epub", replace={toc: renamed})
    book = epub.read_epub(path)
    assert [chapter.title for chapter in book.chapters] == [
        "Named by the Contents",
        "The Second Chapter",
    ]
    # The <h1> still says what the document says.
    assert book.chapters[0].text.startswith("The First Chapter\n\n")


def test_titles_fall_back_to_the_first_heading_then_to_a_number(tmp_path: pathlib.Path) -> None:
    make = hostile_epubs
    nav = make.xhtml(
        '<nav epub:type="toc"><ol>'
        '<li><a href="text/one.xhtml#start">From the Nav</a></li>'
        '<li><a href="text/chapter%20two.xhtml">  Spaced\n  Title </a></li>'
        "</ol></nav>"
    )
    opf = make.package(
        manifest=make.item("nav", "nav.xhtml", extra=' properties="nav"')
        + make.item("one", "text/one.xhtml")
        + make.item("two", "text/chapter%20two.xhtml")
        + make.item("three", "text/three.xhtml")
        + make.item("four", "text/four.xhtml"),
        spine='<itemref idref="one"/><itemref idref="two"/>'
        '<itemref idref="three"/><itemref idref="four"/>',
    )
    path = make.write_book(
        tmp_path / "titles.epub",
        opf,
        {
            "OEBPS/nav.xhtml": nav,
            "OEBPS/text/one.xhtml": make.xhtml('<h1 id="start">Heading One</h1><p>a</p>'),
            "OEBPS/text/chapter two.xhtml": make.xhtml("<h1>Heading Two</h1><p>b</p>"),
            "OEBPS/text/three.xhtml": make.xhtml(
                "<p>Before.</p><h3>Third <em>Heading</em></h3><h1>Not this</h1>"
            ),
            "OEBPS/text/four.xhtml": make.xhtml("<p>No heading at all.</p>"),
        },
    )
    book = epub.read_epub(path)
    assert [chapter.title for chapter in book.chapters] == [
        "From the Nav",
        "Spaced Title",
        "Third Heading",
        "Chapter 4",
    ]


def test_ncx_links_are_relative_to_the_ncx(tmp_path: pathlib.Path) -> None:
    make = hostile_epubs
    ncx = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>'
        '<navPoint id="p1"><navLabel><text>Deep Link</text></navLabel>'
        '<content src="../text/a.xhtml#part"/></navPoint></navMap></ncx>'
    )
    opf = make.package(
        version="2.0",
        manifest=make.item("ncx", "toc/toc.ncx", "application/x-dtbncx+xml")
        + make.item("a", "text/a.xhtml"),
        spine='<itemref idref="a"/>',
        spine_attributes=' toc="ncx"',
    )
    path = make.write_book(
        tmp_path / "ncx.epub",
        opf,
        {
            "OEBPS/toc/toc.ncx": ncx,
            "OEBPS/text/a.xhtml": make.xhtml("<h1>Heading</h1><p>x</p>"),
        },
    )
    assert [chapter.title for chapter in epub.read_epub(path).chapters] == ["Deep Link"]


def test_non_linear_empty_and_non_text_spine_items_are_skipped(tmp_path: pathlib.Path) -> None:
    make = hostile_epubs
    opf = make.package(
        manifest=make.item("nav", "nav.xhtml", extra=' properties="nav"')
        + make.item("cover", "cover.xhtml")
        + make.item("notes", "notes.xhtml")
        + make.item("blank", "blank.xhtml")
        + make.item("body", "body.xhtml")
        + make.item("css", "style.css", "text/css")
        + make.item("end", "end.xhtml"),
        spine='<itemref idref="cover"/><itemref idref="nav"/>'
        '<itemref idref="notes" linear="no"/><itemref idref="missing"/>'
        '<itemref idref="blank"/><itemref idref="css"/><!-- a comment -->'
        '<itemref idref="body"/><itemref idref="body"/><itemref idref="end"/>',
    )
    path = make.write_book(
        tmp_path / "spine.epub",
        opf,
        {
            "OEBPS/nav.xhtml": make.xhtml(
                '<nav epub:type="toc"><ol><li><a href="body.xhtml">Body</a></li></ol></nav>'
            ),
            "OEBPS/cover.xhtml": make.xhtml('<div><img src="cover.png" alt="Cover"/></div>'),
            "OEBPS/notes.xhtml": make.xhtml("<p>Notes that are not in the reading order.</p>"),
            "OEBPS/blank.xhtml": make.xhtml("<div>  \n\u00a0 </div>"),
            "OEBPS/body.xhtml": make.xhtml("<p>The body.</p>"),
            "OEBPS/style.css": "p { margin: 0 }",
            "OEBPS/end.xhtml": make.xhtml("<p>The end.</p>"),
        },
    )
    chapters = epub.read_epub(path).chapters
    assert [(c.index, c.title, c.text) for c in chapters] == [
        (0, "Body", "The body."),
        (1, "Chapter 2", "The end."),
    ]


def test_text_extraction_keeps_structure_and_drops_code(tmp_path: pathlib.Path) -> None:
    make = hostile_epubs
    # Not well-formed XML (``&nbsp;`` without its DTD, an unclosed <p>): the HTML parser
    # reads it, as reading systems do.
    messy = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Head title</title>'
        "<style>p { color: red }</style></head><body>"
        "<script>var hidden = 1;</script>"
        "<p>One&nbsp;two   three\n four.<p>Second <b>para</b>graph."
        "</body></html>"
    )
    tidy = make.xhtml(
        "<section><h2>Poem</h2><p>Line one<br/>line two</p>"
        "<ul><li>first item</li><li>second item</li></ul>"
        "<table><tr><td>cell a</td><td>cell b</td></tr></table>"
        "<pre>code line 1\ncode   line 2</pre>"
        "<p>Caf\u0065\u0301 <ruby>漢<rt>kan</rt></ruby> <!-- comment --> end</p></section>"
    )
    opf = make.package(
        manifest=make.item("messy", "messy.xhtml") + make.item("tidy", "tidy.xhtml"),
        spine='<itemref idref="messy"/><itemref idref="tidy"/>',
    )
    files = {"OEBPS/messy.xhtml": messy, "OEBPS/tidy.xhtml": tidy}
    chapters = epub.read_epub(make.write_book(tmp_path / "text.epub", opf, files)).chapters
    assert chapters[0].text == "One two three four.\n\nSecond paragraph."
    assert chapters[1].text == (
        "Poem\n\nLine one\nline two\n\nfirst item\n\nsecond item\n\ncell a cell b\n\n"
        "code line 1\ncode line 2\n\nCafé 漢 end"
    )
    assert unicodedata.is_normalized("NFC", chapters[1].text)


@pytest.mark.parametrize("encoding", ["utf-16", "windows-1251"])
def test_documents_in_other_encodings(tmp_path: pathlib.Path, encoding: str) -> None:
    make = hostile_epubs
    document = make.xhtml("<h1>Глава</h1><p>Съешь же ещё этих мягких булок.</p>").replace(
        'encoding="utf-8"', f'encoding="{encoding}"'
    )
    opf = make.package(manifest=make.item("a", "a.xhtml"), spine='<itemref idref="a"/>')
    path = make.write_book(
        tmp_path / "encoded.epub", opf, {"OEBPS/a.xhtml": document.encode(encoding)}
    )
    (chapter,) = epub.read_epub(path).chapters
    assert chapter.title == "Глава"
    assert chapter.text == "Глава\n\nСъешь же ещё этих мягких булок."


def test_metadata_edge_cases(tmp_path: pathlib.Path) -> None:
    make = hostile_epubs
    # The last identifier with an id is "other", the first "uuid"; the package's
    # unique-identifier says "isbn", and that one counts.
    metadata = (
        '<dc:identifier id="uuid">urn:uuid:00000000-0000-0000-0000-000000000001</dc:identifier>'
        '<dc:identifier id="isbn">978-3-16-148410-0</dc:identifier>'
        '<dc:identifier id="other">other-id</dc:identifier>'
        "<dc:creator>Zoë Second</dc:creator><dc:creator>  Adam\n First </dc:creator>"
        "<dc:creator></dc:creator>"
        "<dc:description>&lt;p&gt;A &lt;i&gt;fine&lt;/i&gt; book.&lt;/p&gt;"
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;p&gt;Second.&lt;/p&gt;</dc:description>"
    )
    opf = make.package(
        metadata=metadata,
        unique_identifier="isbn",
        manifest=make.item("a", "a.xhtml"),
        spine='<itemref idref="a"/>',
    )
    path = make.write_book(
        tmp_path / "Untitled Stem.epub", opf, {"OEBPS/a.xhtml": make.xhtml("<p>x</p>")}
    )
    book = epub.read_epub(path)
    assert book.title == "Untitled Stem"
    assert book.identifier == "978-3-16-148410-0"
    assert book.authors == ("Zoë Second", "Adam First")
    assert book.description == "A fine book.\n\nSecond."
    assert (book.language, book.publisher, book.date) == (None, None, None)


# --- Hostile files ----------------------------------------------------------------------------


def refused(path: pathlib.Path, match: str, limits: epub.Limits | None = None) -> epub.EpubError:
    # pytest.raises lets any other exception through, which fails the test: only
    # EpubError may leave read_epub.
    with pytest.raises(epub.EpubError, match=match) as caught:
        epub.read_epub(path, limits or epub.Limits())
    return caught.value


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (hostile_epubs.not_a_zip, r"^not an EPUB: the file is not a zip archive$"),
        (hostile_epubs.truncated_zip, r"^not an EPUB: the zip archive is truncated or damaged$"),
        (
            lambda folder: hostile_epubs.truncated_zip(folder, keep=0.999),
            r"^not an EPUB: the zip archive is truncated or damaged$",
        ),
        (hostile_epubs.damaged_entry, r"^EPUB entry 'OEBPS/text/chapter-001.xhtml' is damaged: "),
        (hostile_epubs.missing_container, r"^EPUB is missing META-INF/container.xml$"),
        (
            hostile_epubs.container_to_missing_opf,
            r"^EPUB META-INF/container.xml names 'OEBPS/missing.opf' as the package document,"
            r" which is not in the book$",
        ),
        (
            hostile_epubs.zip_bomb,
            r"^EPUB would unpack to 320 MiB, over the 300 MiB limit$",
        ),
        (
            hostile_epubs.compressed_too_well,
            r"^EPUB entry 'OEBPS/zeros.bin' would expand \d+ times \(to 2 MiB\), over the"
            r" limit of 100 times: a zip bomb$",
        ),
        (hostile_epubs.lying_sizes, r"^EPUB entry 'OEBPS/big.bin' is damaged: .*CRC"),
        (hostile_epubs.encrypted_entry, r"^EPUB entry 'OEBPS/style.css' is encrypted$"),
        (hostile_epubs.duplicate_entry, r"^EPUB has two entries named 'OEBPS/text/chapter-001"),
        (
            lambda folder: hostile_epubs.named_entry(folder, "../../etc/passwd"),
            r"^EPUB entry '\.\./\.\./etc/passwd' points outside the book$",
        ),
        (
            lambda folder: hostile_epubs.named_entry(folder, "OEBPS/../../escape.txt"),
            r"points outside the book$",
        ),
        (
            lambda folder: hostile_epubs.named_entry(folder, "/etc/passwd"),
            r"^EPUB entry '/etc/passwd' has an absolute path$",
        ),
        (
            lambda folder: hostile_epubs.named_entry(folder, "C:/Windows/win.ini"),
            r"has an absolute path$",
        ),
        (
            lambda folder: hostile_epubs.named_entry(folder, "..\\..\\evil.bat"),
            r"has a backslash in its name$",
        ),
        (
            lambda folder: hostile_epubs.named_entry(folder, "evil\x00.xhtml"),
            r"^EPUB entry 'evil\\x00.xhtml' has a control character in its name$",
        ),
    ],
)
def test_hostile_archives_are_refused(
    tmp_path: pathlib.Path,
    make: collections.abc.Callable[[pathlib.Path], pathlib.Path],
    message: str,
) -> None:
    refused(make(tmp_path), message)


def test_limits_on_file_size_entries_and_unpacked_size(tmp_path: pathlib.Path) -> None:
    path = hostile_epubs.valid_book(tmp_path)
    size = path.stat().st_size
    refused(
        path,
        r"^EPUB file is [\d.]+ KiB, over the 1000 bytes limit$",
        epub.Limits(max_file_bytes=1000),
    )
    epub.read_epub(path, epub.Limits(max_file_bytes=size))  # exactly at the limit is fine
    with zipfile.ZipFile(path) as archive:
        count = len(archive.infolist())
    epub.read_epub(path, epub.Limits(max_entries=count))
    refused(
        path,
        rf"^EPUB has {count} entries, over the limit of {count - 1}$",
        epub.Limits(max_entries=count - 1),
    )
    refused(
        path,
        r"^EPUB would unpack to [\d.]+ KiB, over the 2 KiB limit$",
        epub.Limits(max_uncompressed_bytes=2048),
    )
    refused(
        path,
        r"would expand [\d]+ times .* over the limit of 1\.5 times",
        epub.Limits(max_compression_ratio=1.5, ratio_check_min_bytes=1),
    )


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries must be positive"):
        epub.Limits(max_entries=0)


def test_a_fifo_is_refused_without_blocking(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "book.epub"
    os.mkfifo(fifo)
    refused(fifo, "^not a regular file: ")


def test_a_missing_file(tmp_path: pathlib.Path) -> None:
    refused(tmp_path / "nowhere.epub", "^no such file: .*nowhere.epub$")


def test_drm_is_refused_but_obfuscated_fonts_are_not(tmp_path: pathlib.Path) -> None:
    def encryption(uri: str) -> bytes:
        return (
            '<?xml version="1.0"?><encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:'
            'container" xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
            f'<enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>'
            "</enc:EncryptedData></encryption>"
        ).encode()

    source = hostile_epubs.valid_book(tmp_path)
    drm = hostile_epubs.rewrite(
        source,
        tmp_path / "drm.epub",
        add=[("META-INF/encryption.xml", encryption("OEBPS/text/chapter-001.xhtml"))],
    )
    refused(drm, r"^EPUB is DRM-protected: its text is encrypted")
    fonts = hostile_epubs.rewrite(
        source,
        tmp_path / "fonts.epub",
        add=[("META-INF/encryption.xml", encryption("OEBPS/fonts/serif.otf"))],
    )
    assert len(epub.read_epub(fonts).chapters) == 2


def test_broken_package_documents_give_clear_errors(tmp_path: pathlib.Path) -> None:
    make = hostile_epubs
    no_spine = make.package(manifest=make.item("a", "a.xhtml"), spine="").replace(
        "<spine></spine>", ""
    )
    path = make.write_book(tmp_path / "no-spine.epub", no_spine, {})
    refused(path, r"^EPUB package document OEBPS/content.opf has no <spine>$")
    missing = make.package(manifest=make.item("a", "a.xhtml"), spine='<itemref idref="a"/>')
    path = make.write_book(tmp_path / "missing-item.epub", missing, {})
    refused(
        path,
        r"^EPUB could not be read: the documents its spine names are not in the book: a.xhtml$",
    )
    no_rootfile = make.CONTAINER.replace("application/oebps-package+xml", "text/plain")
    path = hostile_epubs.rewrite(
        make.valid_book(tmp_path),
        tmp_path / "no-rootfile.epub",
        replace={"META-INF/container.xml": no_rootfile.format(opf="x").encode()},
    )
    refused(path, r"^EPUB META-INF/container.xml names no package document \(OPF\)$")


def test_damaged_files_only_ever_raise_epub_error(tmp_path: pathlib.Path) -> None:
    original = hostile_epubs.valid_book(tmp_path).read_bytes()
    generator = random.Random(20260101)
    path = tmp_path / "mutant.epub"
    outcomes = {"read": 0, "refused": 0}
    for attempt in range(300):
        data = bytearray(original)
        if attempt % 3 == 0:
            data = data[: generator.randrange(len(data))]
        else:
            for _ in range(generator.randint(1, 8)):
                data[generator.randrange(len(data))] = generator.randrange(256)
        path.write_bytes(bytes(data))
        try:
            epub.read_epub(path)
        except epub.EpubError:
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert outcomes["refused"] > 100  # the mutations did hit something


# --- Entities: XXE and billion laughs ----------------------------------------------------------


@pytest.fixture
def secret(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "secret.txt"
    path.write_text(f"TOP-SECRET-{uuid.uuid4()}")
    return path


def every_message(error: BaseException) -> str:
    texts = []
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


def test_the_xxe_fixture_does_leak_through_a_careless_parser(secret: pathlib.Path) -> None:
    # Proof that the files below are live: a parser that resolves entities reads the secret.
    careless = lxml.etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=False)
    document = hostile_epubs.xxe_chapter(secret).encode()
    root = lxml.etree.fromstring(document, careless)
    assert secret.read_text() in "".join(root.itertext())


def xxe_cases(secret: pathlib.Path, folder: pathlib.Path) -> dict[str, pathlib.Path]:
    make = hostile_epubs
    chapter = make.xxe_chapter(secret)
    parameter = (
        '<?xml version="1.0"?>\n<!DOCTYPE html [<!ENTITY % p SYSTEM "'
        + secret.as_uri()
        + '"> %p;]><html xmlns="http://www.w3.org/1999/xhtml"><body>x</body></html>'
    )
    utf7 = (
        '<?xml version="1.0" encoding="UTF-7"?>\n+ADw-+ACE-DOCTYPE html +AFs-+ADw-+ACE-ENTITY'
        f" xxe SYSTEM +ACI-{secret.as_uri()}+ACI-+AD4-+AF0-+AD4-\n"
        '<html xmlns="http://www.w3.org/1999/xhtml"><body>&xxe;</body></html>'
    )
    ncx = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        + make.xxe_doctype(secret, "ncx")
        + '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/"><navMap><navPoint id="a">'
        '<navLabel><text>&xxe;</text></navLabel><content src="text/chapter-001.xhtml"/>'
        "</navPoint></navMap></ncx>"
    )
    chapter_name = "OEBPS/text/chapter-001.xhtml"
    return {
        "package": make.xxe_in_package(folder / "p", secret),
        "chapter": make.with_entry(folder / "c", chapter_name, chapter.encode()),
        "utf-16 chapter": make.with_entry(folder / "u", chapter_name, chapter.encode("utf-16")),
        "utf-16 without BOM": make.with_entry(
            folder / "b",
            chapter_name,
            chapter.replace("utf-8", "utf-16").encode("utf-16-le"),
        ),
        "utf-7 chapter": make.with_entry(folder / "7", chapter_name, utf7.encode("ascii")),
        "parameter entity": make.with_entry(folder / "e", chapter_name, parameter.encode()),
        "container": make.with_entry(
            folder / "k",
            "META-INF/container.xml",
            make.CONTAINER.format(opf="OEBPS/content.opf")
            .replace("?>\n", "?>\n" + make.xxe_doctype(secret, "container") + "\n", 1)
            .encode(),
        ),
        "ncx": make.with_entry(folder / "n", "OEBPS/toc.ncx", ncx.encode(), version=2),
        "svg image": make.with_entry(
            folder / "s",
            "OEBPS/images/cover.svg",
            (make.xxe_doctype(secret, "svg") + "<svg><text>&xxe;</text></svg>").encode(),
        ),
        "inside a png": make.with_entry(
            folder / "g", "OEBPS/images/x.png", b"\x89PNG\r\n\x1a\n" + chapter.encode()
        ),
        "billion laughs": make.with_entry(folder / "l", chapter_name, make.BILLION_LAUGHS.encode()),
        "internal subset": make.with_entry(
            folder / "i",
            chapter_name,
            make.xhtml(
                "<p>x</p>", doctype='<!DOCTYPE html [<!ATTLIST p class CDATA "x">]>'
            ).encode(),
        ),
    }


XXE_CASES = [
    "package",
    "chapter",
    "utf-16 chapter",
    "utf-16 without BOM",
    "utf-7 chapter",
    "parameter entity",
    "container",
    "ncx",
    "svg image",
    "inside a png",
    "billion laughs",
    "internal subset",
]


@pytest.mark.parametrize("case", XXE_CASES)
def test_entity_declarations_are_refused_and_nothing_leaks(
    tmp_path: pathlib.Path, secret: pathlib.Path, case: str
) -> None:
    for sub in "pcub7eknsgli":
        (tmp_path / sub).mkdir()
    path = xxe_cases(secret, tmp_path)[case]
    error = refused(path, r"^XML in .* declares entities \(DOCTYPE/ENTITY\), which are refused$")
    assert secret.read_text() not in every_message(error)
    assert "TOP-SECRET" not in every_message(error)


def test_the_chapter_parser_is_safe_on_its_own(secret: pathlib.Path) -> None:
    # Defence in depth: even without the scan, our parser neither resolves nor expands.
    for document in (hostile_epubs.xxe_chapter(secret), hostile_epubs.BILLION_LAUGHS):
        root = extract.parse_document("x.xhtml", document.encode())
        text = "".join(root.itertext())
        assert secret.read_text() not in text
        assert "lollollol" not in text


def test_an_external_dtd_is_never_loaded(tmp_path: pathlib.Path, secret: pathlib.Path) -> None:
    # A DOCTYPE without an internal subset is allowed (EPUB 2 books all have one), but the
    # DTD it names is not loaded, so its entities stay undefined.
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak SYSTEM "{secret.as_uri()}">')
    chapter = hostile_epubs.xhtml(
        "<h1>Title</h1><p>before &leak; after</p>",
        doctype=f'<!DOCTYPE html SYSTEM "{dtd.as_uri()}">',
    )
    careless = lxml.etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=False)
    assert secret.read_text() in "".join(
        lxml.etree.fromstring(chapter.encode(), careless).itertext()
    )
    path = hostile_epubs.with_entry(tmp_path, "OEBPS/text/chapter-001.xhtml", chapter.encode())
    book = epub.read_epub(path)
    assert book.chapters[0].title == "The First Chapter"
    assert "before" in book.chapters[0].text
    assert all(secret.read_text() not in chapter.text for chapter in book.chapters)


def test_brackets_inside_quoted_doctype_identifiers_are_not_a_subset(
    tmp_path: pathlib.Path,
) -> None:
    # A system literal may hold any character but its quote.
    doctype = "<!DOCTYPE html PUBLIC \"-//Odd//EN\" 'http://example.org/[x]>.dtd'>"
    chapter = hostile_epubs.xhtml("<h1>Odd</h1><p>Fine.</p>", doctype=doctype)
    path = hostile_epubs.with_entry(tmp_path, "OEBPS/text/chapter-001.xhtml", chapter.encode())
    assert epub.read_epub(path).chapters[0].text == "Odd\n\nFine."


def test_unknown_declared_encodings_are_refused(tmp_path: pathlib.Path) -> None:
    document = hostile_epubs.xhtml("<p>x</p>").replace('encoding="utf-8"', 'encoding="x-nope"')
    path = hostile_epubs.with_entry(tmp_path, "OEBPS/text/chapter-001.xhtml", document.encode())
    refused(path, r"declares the encoding 'x-nope', which is not supported$")


# --- Paths ----------------------------------------------------------------------------------


@pytest.fixture
def books_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    folder = tmp_path / "books"
    (folder / "shelf").mkdir(parents=True)
    (folder / "shelf" / "inside.epub").write_bytes(b"x")
    (tmp_path / "outside.epub").write_bytes(b"x")
    return folder


def test_paths_inside_the_books_dir_resolve(books_dir: pathlib.Path) -> None:
    real = (books_dir / "shelf" / "inside.epub").resolve()
    assert epub.resolve_book_path("shelf/inside.epub", str(books_dir)) == real
    assert epub.resolve_book_path("shelf/../shelf/inside.epub", str(books_dir)) == real
    assert epub.resolve_book_path(str(real), str(books_dir)) == real
    (books_dir / "link.epub").symlink_to(books_dir / "shelf" / "inside.epub")
    assert epub.resolve_book_path("link.epub", str(books_dir)) == real


@pytest.mark.parametrize(
    "file_path",
    ["../outside.epub", "shelf/../../outside.epub", "OUTSIDE_ABSOLUTE", "escape.epub", "/etc"],
)
def test_paths_outside_the_books_dir_are_refused(books_dir: pathlib.Path, file_path: str) -> None:
    (books_dir / "escape.epub").symlink_to(books_dir.parent / "outside.epub")
    if file_path == "OUTSIDE_ABSOLUTE":
        file_path = str(books_dir.parent / "outside.epub")
    with pytest.raises(epub.EpubError, match="is outside the books directory"):
        epub.resolve_book_path(file_path, str(books_dir))


def test_missing_files_and_odd_paths(
    books_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(epub.EpubError, match=r"^no such file: shelf/nope.epub$"):
        epub.resolve_book_path("shelf/nope.epub", str(books_dir))
    # Outside the books directory, whether a file exists is nobody's business.
    with pytest.raises(epub.EpubError, match="outside the books directory"):
        epub.resolve_book_path("../nope.epub", str(books_dir))
    with pytest.raises(epub.EpubError, match=r"^not a regular file: shelf$"):
        epub.resolve_book_path("shelf", str(books_dir))
    for bad in ("", "a\x00b"):
        with pytest.raises(epub.EpubError, match=r"^invalid file path"):
            epub.resolve_book_path(bad, str(books_dir))
    monkeypatch.chdir(books_dir / "shelf")
    real = (books_dir / "shelf" / "inside.epub").resolve()
    assert epub.resolve_book_path("inside.epub", None) == real
    with pytest.raises(epub.EpubError, match=r"^no such file: nope.epub$"):
        epub.resolve_book_path("nope.epub", None)


def test_a_symlink_loop_is_an_epub_error(books_dir: pathlib.Path) -> None:
    (books_dir / "a.epub").symlink_to(books_dir / "b.epub")
    (books_dir / "b.epub").symlink_to(books_dir / "a.epub")
    with pytest.raises(epub.EpubError):
        epub.resolve_book_path("a.epub", str(books_dir))
