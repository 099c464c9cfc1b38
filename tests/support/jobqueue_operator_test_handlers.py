"""Handlers for the operator's e2e tests, run by worker pods (``JOBQUEUE_IMPORTS``).

``op.work`` records each finished run in the table ``operator_runs`` of the job's own
database, whose primary key is the job id: a job that ran to the end twice would fail on
the second insert, so the table proves "every job exactly once". A run can be held until
the file ``payload["release"]`` exists, so a test can keep a worker busy.

``op.hog`` takes more memory than a worker pod may have (the real node's OOM test).

``op.flaky`` fails on purpose, so that failures and retries show in the metrics: each of its
first ``payload["failures"]`` attempts (all of them when not given) raises, and a retry comes
a second later rather than the default 30 s.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import typing

import jobqueue

RUNS_TABLE: typing.Final = """
CREATE TABLE IF NOT EXISTS operator_runs (
    job_id uuid PRIMARY KEY,
    worker text NOT NULL,
    pid integer NOT NULL,
    attempt integer NOT NULL
)
"""


@jobqueue.handler("op.work")
async def work(payload: dict[str, typing.Any], job: jobqueue.RunningJob) -> dict[str, typing.Any]:
    release = payload.get("release")
    while release and not pathlib.Path(release).exists():
        await asyncio.sleep(0.05)
    await asyncio.sleep(payload.get("pause", 0))
    async with job.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO operator_runs (job_id, worker, pid, attempt) VALUES (%s, %s, %s, %s)",
            (job.id, job.locked_by or "", os.getpid(), job.attempts),
        )
    return {"worker": job.locked_by}


@jobqueue.handler("op.flaky", retry=jobqueue.RetryPolicy(delay=1.0))
async def flaky(payload: dict[str, typing.Any], job: jobqueue.RunningJob) -> dict[str, typing.Any]:
    await asyncio.sleep(payload.get("pause", 0))
    failures = payload.get("failures")
    if failures is None or job.attempts <= failures:
        raise RuntimeError(f"attempt {job.attempts} of op.flaky fails, as the test asked")
    return {"attempts": job.attempts}


@jobqueue.handler("op.hog")
async def hog(payload: dict[str, typing.Any], job: jobqueue.RunningJob) -> None:
    """Takes ``payload["mb"]`` megabytes and touches every page of them: past a pod's
    memory limit, the kernel kills the worker (an OOM kill), which must not lose the job."""
    held = bytearray(payload["mb"] * 1024 * 1024)
    for offset in range(0, len(held), 4096):
        held[offset] = 1
    await asyncio.sleep(payload.get("hold", 60))
