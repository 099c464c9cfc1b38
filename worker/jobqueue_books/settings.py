"""The book pipeline's settings, declared like the core's (``jobqueue.settings``) and listed
with them by ``jobqueue settings`` through the ``jobqueue.settings`` entry point."""

from __future__ import annotations

import typing

from jobqueue import settings

BOOKS_DIR = settings.Setting(
    "books_dir",
    "JOBQUEUE_BOOKS_DIR",
    settings.Kind.TEXT,
    "the folder book files must be in; relative file paths start there",
    group="books",
    unset="none: any path",
    cli=False,
)
EMBEDDER = settings.Setting(
    "embedder",
    "JOBQUEUE_EMBEDDER",
    settings.Kind.TEXT,
    "use (built in: multilingual, the best that installs light), static (built in: the"
    " lightest), e5 (the e5 extra), minilm (the minilm extra), or module:factory",
    default="use",
    group="books",
    cli=False,
)

SETTINGS: typing.Final = (BOOKS_DIR, EMBEDDER)
