"""The book pipeline's SQL: its named queries and its migrations (component ``books``)."""

from __future__ import annotations

import typing

from jobqueue import sql

query: typing.Final = sql.NamedQueries(__name__)
