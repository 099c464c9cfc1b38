"""The audit trail of admin actions: who did what, when, to which queue or jobs (the filter
that named them) and how many jobs it changed. The web UI writes an entry for every action
it takes and shows them; anything else operating the queue may write its own.

Each function is a method of ``jobqueue.Queue`` (``self``: the queue whose pool it uses).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import typing

from jobqueue import checks, producer, statements, types

DEFAULT_PAGE: typing.Final = 50
MAX_DETAIL: typing.Final = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin action. ``filter``: the filter that named the jobs, as JSON (``None`` for
    an action on a queue); ``jobs``: how many it changed (``None``: not known, as it has
    not ended, or was cut short)."""

    id: int
    at: datetime.datetime
    actor: str
    role: str
    action: str
    queue: str | None
    filter: dict[str, typing.Any] | None
    jobs: int | None
    detail: str | None

    def to_json(self) -> dict[str, types.JsonValue]:
        return types.fields_as_json(self, dataclasses.fields(self))


def filter_as_json(job_filter: types.JobFilter) -> dict[str, types.JsonValue]:
    """The conditions a filter sets (its fields not ``None``), as JSON-ready values."""
    checked = checks.check_filter(job_filter)  # ids as UUIDs, times checked, payload as text
    out: dict[str, types.JsonValue] = {}
    for field in dataclasses.fields(job_filter):
        value = checked[field.name]
        if value is None:
            continue
        if field.name == "payload_contains":
            value = json.loads(value)
        elif isinstance(value, datetime.datetime):
            value = value.isoformat()
        elif field.name == "ids":
            value = [str(job_id) for job_id in value]
        out[field.name] = value
    return out


async def record_action(
    self: producer.Producer,
    *,
    actor: str,
    role: str,
    action: str,
    queue: str | None = None,
    job_filter: types.JobFilter | None = None,
    jobs: int | None = None,
    detail: str | None = None,
    now: datetime.datetime | None = None,
) -> AuditEntry:
    """Append an entry to the audit trail; returns it as stored. Written before an action
    starts (``jobs`` unknown), and completed by ``finish_action`` when it ends, an action
    cut short stays on record."""
    params = {
        "actor": checks.check_name(actor, "actor"),
        "role": checks.check_name(role, "role"),
        "action": checks.check_name(action, "action"),
        "queue": None if queue is None else checks.check_name(queue, "queue"),
        "filter": None if job_filter is None else json.dumps(filter_as_json(job_filter)),
        "jobs": _jobs(jobs),
        "detail": None if detail is None else detail[:MAX_DETAIL],
        "now": checks.check_time(now, "now"),
    }
    (row,) = await statements.rows(self.pool, "audit_record", params)
    return AuditEntry(*row)


def _jobs(jobs: int | None) -> int | None:
    return None if jobs is None else checks.check_int(jobs, "jobs", minimum=0, maximum=2**62)


async def finish_action(
    self: producer.Producer, entry_id: int, *, jobs: int | None, detail: str | None
) -> AuditEntry:
    """Complete the entry of an action that has ended: how many jobs it changed (``None``
    when that is not known: it was cut short), and how it went."""
    params = {
        "id": checks.check_int(entry_id, "entry id", minimum=1, maximum=2**62),
        "jobs": _jobs(jobs),
        "detail": None if detail is None else detail[:MAX_DETAIL],
    }
    rows = await statements.rows(self.pool, "audit_finish", params)
    if not rows:
        raise LookupError(f"no audit entry {entry_id}")
    return AuditEntry(*rows[0])


async def list_actions(
    self: producer.Producer, *, before: int | None = None, limit: int = DEFAULT_PAGE
) -> list[AuditEntry]:
    """A page of the audit trail, newest first; for the next page pass the last entry's id
    as ``before``."""
    params = {
        "before": None
        if before is None
        else checks.check_int(before, "before", minimum=1, maximum=2**62),
        "limit": checks.check_int(limit, "limit", minimum=1, maximum=1000),
    }
    return [AuditEntry(*row) for row in await statements.rows(self.pool, "audit_list", params)]
