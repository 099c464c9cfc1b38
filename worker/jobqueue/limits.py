"""Concurrency and rate limits (migration 0011): how many jobs of a queue, of a job type in
it, or of each concurrency key in it may run at once, and start in a time, across every
worker. Stored in ``job_limits``
and read by every claim, so a change holds from the next claim on, with no restart; jobs
already running go on. ``Queue`` has these as methods."""

from __future__ import annotations

import datetime
import logging
import typing

from jobqueue import checks, producer, statements, types

logger = logging.getLogger("jobqueue.queue")


def _scope(
    self: producer.Producer,
    queue: str | None,
    job_type: str | None,
    key: str | None,
    per_key: bool,
) -> dict[str, typing.Any]:
    """The row a limit is kept in: the queue's own, a type's, a key's or every key's."""
    given = [name for name, value in (("type", job_type), ("key", key)) if value is not None]
    if per_key:
        given.append("per_key")
    if len(given) > 1:
        raise ValueError(f"a limit is of one scope: {' and '.join(given)} were given")
    if job_type is not None:
        scope, name = types.LimitScope.TYPE, checks.check_name(job_type, "job type")
    elif key is not None:
        scope, name = types.LimitScope.KEY, checks.check_name(key, "concurrency_key")
    elif per_key:
        scope, name = types.LimitScope.KEY, ""
    else:
        scope, name = types.LimitScope.QUEUE, ""
    return {
        "queue": self.queue if queue is None else checks.check_name(queue, "queue"),
        "scope": scope.value,
        "name": name,
    }


def _count(value: int | None, what: str, maximum: int = checks.INT32_MAX) -> int | None:
    """A limit's number, checked; ``None`` (no such limit) as it is."""
    return None if value is None else checks.check_int(value, what, minimum=1, maximum=maximum)


async def _write(
    self: producer.Producer, query: str, params: dict[str, typing.Any], now: object
) -> types.Limit:
    """Write a limit with ``query`` and log it; the limit as stored."""
    params["now"] = checks.check_time(now, "now")
    (row,) = await statements.rows(self.pool, query, params)
    limit = _limit(row)
    rate = "no rate" if limit.rate is None else f"{limit.rate} per {limit.per:g} s"
    logger.info(
        "[Queue] Limits of queue %s, %s %r: %s at once, %s",
        limit.queue,
        limit.scope,
        limit.name,
        "any number" if limit.concurrency is None else limit.concurrency,
        rate,
    )
    return limit


def _limit(row: typing.Sequence[typing.Any]) -> types.Limit:
    queue, scope, name, concurrency, updated_at, rate, per, burst = row[:8]
    return types.Limit(
        queue, types.LimitScope(scope), name, concurrency, updated_at, rate, per, burst
    )


async def limit_concurrency(
    self: producer.Producer,
    concurrency: int | None,
    *,
    queue: str | None = None,
    type: str | None = None,
    key: str | None = None,
    per_key: bool = False,
    now: datetime.datetime | None = None,
) -> types.Limit:
    """At most ``concurrency`` jobs of ``queue`` (default: this ``Queue``'s) running at once:
    of the whole queue; of job ``type``; of concurrency ``key``; or, with ``per_key``, of
    each key that has no limit of its own. With any limit by key (``concurrency`` ``None``
    too) the queue's claims take turns between keys. Idle workers are woken to claim under
    it. Returns the limit as stored."""
    params = _scope(self, queue, type, key, per_key)
    params["concurrency"] = _count(concurrency, "concurrency")
    return await _write(self, "job_limit_set", params, now)


async def limit_rate(
    self: producer.Producer,
    rate: int | None,
    *,
    per: float = 1.0,
    burst: int | None = None,
    queue: str | None = None,
    type: str | None = None,
    key: str | None = None,
    per_key: bool = False,
    now: datetime.datetime | None = None,
) -> types.Limit:
    """At most ``rate`` jobs of ``queue`` (default: this ``Queue``'s) started per ``per``
    seconds, across every worker, with bursts of up to ``burst`` (default ``rate``): of the
    whole queue, of job ``type``, of concurrency ``key``, or, with ``per_key``, of each key
    without a rate of its own. ``None`` removes the rate and keeps the concurrency limit.
    Starts are counted in PostgreSQL (a bucket of tokens per scope), at the claim's time."""
    params = _scope(self, queue, type, key, per_key)
    params["rate"] = _count(rate, "rate", maximum=1_000_000)
    params["per"] = checks.check_seconds(per, "per", allow_zero=False)
    params["burst"] = _count(burst, "burst")
    return await _write(self, "job_limit_rate_set", params, now)


async def remove_limit(
    self: producer.Producer,
    *,
    queue: str | None = None,
    type: str | None = None,
    key: str | None = None,
    per_key: bool = False,
) -> bool:
    """Remove a limit set by ``limit_concurrency`` (the same scope arguments); ``False`` when
    there was none. A key without a limit of its own falls back to the ``per_key`` one."""
    params = _scope(self, queue, type, key, per_key)
    removed = bool(await statements.rows(self.pool, "job_limit_delete", params))
    if removed:
        logger.info(
            "[Queue] Removed the limit of queue %s, %s %r",
            params["queue"],
            params["scope"],
            params["name"],
        )
    return removed


async def list_limits(self: producer.Producer, queue: str | None = None) -> list[types.Limit]:
    """The limits of ``queue``, or of every queue."""
    params = {"queue": None if queue is None else checks.check_name(queue, "queue")}
    return [_limit(row) for row in await statements.rows(self.pool, "job_limit_list", params)]


async def queue_has_limits(self: producer.Producer, queue: str | None = None) -> bool:
    """Whether ``queue`` (default: this ``Queue``'s) has limits: its workers
    then claim with ``claim_jobs(limited=True)``."""
    params = {"queue": self.queue if queue is None else checks.check_name(queue, "queue")}
    return bool((await statements.rows(self.pool, "queue_limited", params))[0][0])


async def held_by_limits(
    self: producer.Producer, queue: str | None = None, *, now: datetime.datetime | None = None
) -> int:
    """How many of ``queue``'s ready jobs (default: this ``Queue``'s) its limits hold back
    now: ready, but more workers would not run them. The operator scales for the others.
    Exact for limits by key alone; with limits by type too, an estimate on the low side."""
    params = {
        "queue": self.queue if queue is None else checks.check_name(queue, "queue"),
        "now": checks.check_time(now, "now"),
    }
    return int((await statements.rows(self.pool, "job_limit_held", params))[0][0])
