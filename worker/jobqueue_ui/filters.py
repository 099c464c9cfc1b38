"""A job filter as the UI's forms and query strings carry it, to ``jobqueue.JobFilter`` and
back (the queue checks the values when the filter is used). Field names: ``queue``,
``status`` (repeated), ``type`` (comma-separated), ``created_after`` and ``created_before``
(ISO 8601; without a zone, UTC), ``error`` (text in the error) and ``payload`` (JSON the
payload contains). A field left empty is no condition.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import json
import typing
import urllib.parse

import jobqueue

FIELDS: typing.Final = (
    "queue",
    "status",
    "type",
    "created_after",
    "created_before",
    "error",
    "payload",
)
STATUSES: typing.Final = tuple(status.value for status in jobqueue.JobStatus)


class FilterError(ValueError):
    """A filter field the UI cannot read; the message names the field."""


@dataclasses.dataclass(frozen=True, slots=True)
class FormFilter:
    """The filter as given (text), for forms and links, with the ``JobFilter`` it means."""

    given: dict[str, list[str]]
    job_filter: jobqueue.JobFilter

    def query_string(self, **extra: str) -> str:
        pairs = [(name, value) for name in FIELDS for value in self.given.get(name, [])]
        pairs += [(name, value) for name, value in extra.items() if value]
        return urllib.parse.urlencode(pairs)

    def value(self, name: str) -> str:
        values = self.given.get(name)
        return values[0] if values else ""

    def has_status(self, status: str) -> bool:
        return status in self.given.get("status", [])

    @property
    def empty(self) -> bool:
        return not self.given

    def describe(self) -> str:
        """The conditions, for a confirmation ("queue=books, status=failed"), or "every job"."""
        parts = [f"{name}={','.join(values)}" for name, values in self.given.items()]
        return ", ".join(parts) or "every job"


def _time(text: str, field: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        raise FilterError(
            f"{field}: {text[:40]!r} is not a time: use ISO 8601, e.g. 2026-12-07T09:30"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def parse(items: collections.abc.Iterable[tuple[str, str]]) -> FormFilter:
    """A filter from form or query-string pairs; other names are ignored."""
    given: dict[str, list[str]] = {}
    for name, value in items:
        if name in FIELDS and value.strip():
            given.setdefault(name, []).append(value.strip())
    for name, values in given.items():
        if name != "status" and len(values) > 1:
            given[name] = values[:1]
    statuses = given.get("status")
    if statuses:
        unknown = sorted(set(statuses) - set(STATUSES))
        if unknown:
            raise FilterError(f"status: {unknown[0][:40]!r} is not one of {', '.join(STATUSES)}")
        given["status"] = [status for status in STATUSES if status in statuses]
    return FormFilter(given, to_job_filter(given))


def to_job_filter(given: dict[str, list[str]]) -> jobqueue.JobFilter:
    def first(name: str) -> str | None:
        values = given.get(name)
        return values[0] if values else None

    types_text = first("type")
    payload_text = first("payload")
    payload = None
    if payload_text is not None:
        try:
            payload = json.loads(payload_text)
        except (ValueError, RecursionError) as error:
            raise FilterError(f'payload: not JSON ({error}); e.g. {{"bookId": 7}}') from None
    created_after = first("created_after")
    created_before = first("created_before")
    return jobqueue.JobFilter(
        statuses=given.get("status"),
        types=[t.strip() for t in types_text.split(",") if t.strip()] if types_text else None,
        queue=first("queue"),
        created_after=None if created_after is None else _time(created_after, "created_after"),
        created_before=None if created_before is None else _time(created_before, "created_before"),
        error_contains=first("error"),
        payload_contains=payload,
    )


def from_json(body: object) -> jobqueue.JobFilter:
    """A filter as the JSON API takes it: ``JobFilter``'s field names and values
    (``{"queue": "books", "statuses": ["failed"], "payload_contains": {"bookId": 7}}``)."""
    if not isinstance(body, dict):
        raise FilterError("filter must be a JSON object")
    names = {field.name for field in dataclasses.fields(jobqueue.JobFilter)}
    unknown = sorted(set(body) - names)
    if unknown:
        raise FilterError(f"filter: unknown field {unknown[0][:40]!r}: use {', '.join(names)}")
    values = dict(body)
    for name in ("created_after", "created_before"):
        if isinstance(values.get(name), str):
            values[name] = _time(values[name], name)
    return jobqueue.JobFilter(**values)
