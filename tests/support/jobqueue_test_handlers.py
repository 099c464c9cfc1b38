"""Handlers for tests that run real worker processes (``jobqueue worker --import
jobqueue_test_handlers``). Each run can be recorded in a file and made to wait for a
release file, so a test can hold a job mid-run and look at it from outside."""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
import typing

import jobqueue


def _record(payload: dict[str, typing.Any], job: jobqueue.Job) -> None:
    log = payload.get("log")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{job.id} {os.getpid()} {job.attempts}\n")


@jobqueue.handler("test.hold")
async def hold(payload: dict[str, typing.Any], job: jobqueue.Job) -> dict[str, typing.Any]:
    """Runs until the file ``payload["release"]`` exists (never, if it is never made)."""
    _record(payload, job)
    release = pathlib.Path(payload["release"])
    while not release.exists():
        await asyncio.sleep(0.02)
    return {"released": True, "pid": os.getpid()}


@jobqueue.handler("test.hold_sync")
def hold_sync(payload: dict[str, typing.Any], job: jobqueue.Job) -> dict[str, typing.Any]:
    """``test.hold`` as a blocking function: it runs in a handler thread."""
    _record(payload, job)
    release = pathlib.Path(payload["release"])
    while not release.exists():
        time.sleep(0.02)
    return {"released": True}


@jobqueue.handler("test.record")
async def record(payload: dict[str, typing.Any], job: jobqueue.Job) -> dict[str, typing.Any]:
    """Records the run; ``pause`` seconds of pretend work first, if given."""
    await asyncio.sleep(payload.get("pause", 0))
    _record(payload, job)
    return {"ok": True}


@jobqueue.handler("test.fail")
def fail(payload: dict[str, typing.Any], job: jobqueue.Job) -> None:
    raise RuntimeError(f"failing on purpose (attempt {job.attempts})")


class LetterEmbedder:
    """A toy embedder for testing JOBQUEUE_EMBEDDER=module:factory: counts of a, b, c."""

    name = "letters"

    def embed(self, texts: typing.Sequence[str]) -> list[list[float]]:
        from jobqueue_books import embedding

        return [embedding.normalised([t.count("a"), t.count("b"), t.count("c")]) for t in texts]


def make_letter_embedder() -> LetterEmbedder:
    return LetterEmbedder()
