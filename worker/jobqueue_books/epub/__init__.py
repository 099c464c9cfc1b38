"""Reading EPUB files that anyone may have made: the input of the ``parseBook`` job.

An EPUB is a zip archive of XML documents, and both halves are classic attack surfaces. So
``read_epub`` decides whether a file is safe *before* any XML parser sees it:

1. The file: a regular file (a FIFO would block the worker thread forever), at most
   ``Limits.max_file_bytes``, read into memory once; everything after reads those bytes,
   so what was checked is exactly what is parsed (nothing can swap the file in between).
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
   whatever the parser settings. The scan reads the text in every encoding a parser could
   choose (byte-order mark, UTF-16/32 and EBCDIC sniffing, the declared encoding), so
   UTF-16 or UTF-7 cannot hide a declaration. Real books need neither: named entities such
   as ``&nbsp;`` come from the external XHTML DTD, which nothing loads; documents that use
   them are read with the HTML parser instead.

Only then is the book read, by our own code and lxml parsers with entity resolution, DTD
loading and network access off and libxml2's size limits on (``huge_tree=False``), and
only from the entries already inflated and checked: an href never reaches the file system.
Reading forgives what common readers forgive (``package``); anything unexpected becomes
``EpubError``.

The modules: ``safety`` (steps 1-5, the path check and the XML parser settings),
``package`` (the package document to a ``Book``: metadata, spine, table of contents),
``extract`` (text from the documents, in the encoding they really have) and ``model``
(``Book``, ``Limits``, ``EpubError``). This one reads a book through them.
"""

from __future__ import annotations

import pathlib
import typing

from jobqueue_books.epub import model, package, safety

# The reader's public names, where its callers have always found them.
Book = model.Book
Chapter = model.Chapter
EpubError = model.EpubError
Limits = model.Limits
resolve_book_path = safety.resolve_book_path

_DEFAULT_LIMITS: typing.Final = model.Limits()


def read_epub(path: pathlib.Path, limits: model.Limits = _DEFAULT_LIMITS) -> model.Book:
    """Read the book at ``path``, or raise ``EpubError`` saying what is wrong with it.
    Synchronous and CPU-bound: run it in a worker thread."""
    path = pathlib.Path(path)
    data = safety.read_file(path, limits)
    markup = safety.check_archive(data, limits)
    package_path = safety.check_container(markup)
    safety.check_package(package_path, markup)
    safety.check_not_encrypted(markup)
    try:
        return package.read(package_path, markup, fallback_title=path.stem)
    except model.EpubError:
        raise
    except Exception as error:  # the caller must only ever see EpubError
        raise model.EpubError(f"EPUB could not be read: {model.describe(error)}") from error
