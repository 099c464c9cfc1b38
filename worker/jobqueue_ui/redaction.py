"""Redacting payload and result fields named by JSON paths (``JOBQUEUE_UI_REDACT``), so that
a password in a payload never reaches a page or an API answer.

The paths are a small part of JSONPath: ``$`` then steps, each ``.name``, ``['name']``,
``[3]``, ``[*]`` (every element or member) or ``..name`` (a member of that name at any
depth). A redacted value becomes the text ``[redacted]``. A filter that would test a
redacted field (payload containment) is refused, or its answers would tell the value.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import typing

REDACTED: typing.Final = "[redacted]"

_STEP: typing.Final = re.compile(
    r"""\.\.(?P<deep>[A-Za-z_][\w-]*)
      | \.(?P<name>[A-Za-z_][\w-]*)
      | \[\s*'(?P<quoted>(?:[^'\\]|\\.)*)'\s*\]
      | \[\s*"(?P<dquoted>(?:[^"\\]|\\.)*)"\s*\]
      | \[\s*(?P<index>\d+)\s*\]
      | (?P<any>\[\s*\*\s*\]|\.\*)""",
    re.VERBOSE,
)


class PathError(ValueError):
    """A redaction path that is not one of the forms this module reads."""


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    kind: typing.Literal["name", "index", "any", "deep"]
    key: str | int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Path:
    text: str
    steps: tuple[Step, ...]


def parse_path(text: str) -> Path:
    """``$.a.b``, ``$['a b'][*].c``, ``$..token``; a ``PathError`` says what is wrong."""
    source = text.strip()
    if not source.startswith("$"):
        raise PathError(f"redaction path {text!r} must start with $ (e.g. $.password)")
    steps: list[Step] = []
    at = 1
    while at < len(source):
        match = _STEP.match(source, at)
        if match is None:
            raise PathError(
                f"redaction path {text!r}: cannot read {source[at : at + 20]!r}; use .name,"
                " ['name'], [0], [*] or ..name"
            )
        if match["deep"] is not None:
            steps.append(Step("deep", match["deep"]))
        elif match["name"] is not None:
            steps.append(Step("name", match["name"]))
        elif match["quoted"] is not None or match["dquoted"] is not None:
            quoted = match["quoted"] if match["quoted"] is not None else match["dquoted"]
            steps.append(Step("name", re.sub(r"\\(.)", r"\1", quoted)))
        elif match["index"] is not None:
            steps.append(Step("index", int(match["index"])))
        else:
            steps.append(Step("any"))
        at = match.end()
    if not steps:
        raise PathError(f"redaction path {text!r} names the whole value; name a field")
    return Path(source, tuple(steps))


class Redactor:
    """The configured paths, applied to payloads and results."""

    def __init__(self, paths: collections.abc.Iterable[str]) -> None:
        self.paths = tuple(parse_path(path) for path in paths)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def redact(self, value: typing.Any) -> typing.Any:
        """A copy of ``value`` with every field a path names replaced by ``[redacted]``."""
        for path in self.paths:
            value = _redact(value, path.steps)
        return value

    def touched_by(self, value: typing.Any) -> str | None:
        """The first path that names a field ``value`` (a containment filter) sets, if any:
        filtering on it would reveal the redacted value."""
        for path in self.paths:
            if _redact(value, path.steps) != value:
                return path.text
        return None


def _redact(value: typing.Any, steps: tuple[Step, ...]) -> typing.Any:
    if not steps:
        return REDACTED
    step, rest = steps[0], steps[1:]
    if step.kind == "deep":
        return _redact_deep(value, typing.cast(str, step.key), rest)
    if isinstance(value, dict):
        if step.kind == "any":
            return {key: _redact(item, rest) for key, item in value.items()}
        if step.kind == "name" and step.key in value:
            return {**value, step.key: _redact(value[step.key], rest)}
        return value
    if isinstance(value, list):
        if step.kind == "any":
            return [_redact(item, rest) for item in value]
        if step.kind == "index" and isinstance(step.key, int) and step.key < len(value):
            return [_redact(item, rest) if i == step.key else item for i, item in enumerate(value)]
        return value
    return value


def _redact_deep(value: typing.Any, name: str, rest: tuple[Step, ...]) -> typing.Any:
    """``..name``: the member ``name`` of every object at any depth (then ``rest``). The
    recursion is bounded: stored JSON nests at most ``types.MAX_JSON_DEPTH`` deep."""
    if isinstance(value, dict):
        return {
            key: _redact(item, rest) if key == name else _redact_deep(item, name, rest)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_deep(item, name, rest) for item in value]
    return value
