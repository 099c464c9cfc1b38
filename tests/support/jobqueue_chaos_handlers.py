"""The job types of the chaos suite (``tests/support/chaos_suite.py``). Each run appends its start
and its end to a file of its process's own (``$CHAOS_LOG_DIR/<pid>.log``), written and
flushed line by line: the file outlives a ``kill -9`` and a database outage alike, which a
table written through the database under test would not. With ``$CHAOS_SCHEDULE`` set, the
worker also runs a schedule enqueueing a short job each second."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import time
import typing

import jobqueue

_log: typing.TextIO | None = None


def _record(job: jobqueue.Job, event: str) -> None:
    global _log
    if _log is None:
        folder = pathlib.Path(os.environ["CHAOS_LOG_DIR"])
        _log = open(folder / f"{os.getpid()}.log", "a", encoding="utf-8")  # noqa: SIM115
    _log.write(f"{time.time():.6f} {os.getpid()} {job.id} {job.attempts} {event}\n")
    _log.flush()


@jobqueue.handler("chaos.work", retry=jobqueue.RetryPolicy(delay=0.2))
async def work(payload: dict[str, typing.Any], job: jobqueue.Job) -> object:
    """Pretend work of ``ms`` milliseconds; fails on purpose when asked (``fail``: "first"
    fails the first attempt only, "always" every attempt), or snoozes its first run
    (``snooze``)."""
    _record(job, "start")
    try:
        await asyncio.sleep(payload.get("ms", 20) / 1000 * random.uniform(0.5, 1.5))
    except asyncio.CancelledError:
        _record(job, "cancelled")
        raise
    except Exception:  # a payload the handler cannot use: a failure like any other
        _record(job, "failed")
        raise
    if payload.get("snooze") and job.attempts == 1:
        _record(job, "snoozed")
        return jobqueue.Snooze(0.2)
    fail = payload.get("fail")
    if fail == "always" or (fail == "first" and job.attempts == 1):
        _record(job, "failed")
        raise RuntimeError(f"failing on purpose (attempt {job.attempts})")
    _record(job, "ok")
    return {"attempt": job.attempts}


if os.environ.get("CHAOS_SCHEDULE"):
    jobqueue.register_schedule(
        jobqueue.Schedule("chaos-pulse", "chaos.work", {"ms": 20}, every=1, catch_up=1000)
    )
