"""The project's SQL: named queries from ``queries.sql`` and the numbered migrations.

Queries are read once from the package, so the wheel carries them as plain files that a DBA
can read. They come from our own file, never from input: every value a query needs
travels as a parameter.
"""

from __future__ import annotations

import importlib.resources
import re
import typing

_NAME_LINE = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_named_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: sql}``; a repeated name is an error."""
    queries: dict[str, str] = {}
    marks = list(_NAME_LINE.finditer(text))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[mark.end() : end].strip()
        name = mark.group("name")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        if not body:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = body
    return queries


class NamedQueries:
    """The named queries of one package's ``queries.sql`` (the core's, or a plugin's)."""

    def __init__(self, package: str, filename: str = "queries.sql") -> None:
        self.where = f"{package}/{filename}"
        text = importlib.resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        self.queries: typing.Final = parse_named_queries(text)

    def __call__(self, name: str) -> str:
        """The query called ``name``; a KeyError names the missing query and its file."""
        try:
            return self.queries[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self.where}") from None


_CORE: typing.Final = NamedQueries(__name__)
QUERIES: typing.Final = _CORE.queries


def query(name: str) -> str:
    """The core query called ``name``."""
    return _CORE(name)
