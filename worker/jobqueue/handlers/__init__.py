"""The built-in job handlers, and the one place that registers them all (S9)."""

from __future__ import annotations

import typing

from jobqueue import runner, types
from jobqueue.handlers import books


class NoopHandler:
    """``noop``: does nothing and returns ``None``. For smoke tests of a deployment
    (``jobqueue enqueue noop``) and for measuring the queue's own overhead."""

    type = "noop"

    async def handle(self, payload: typing.Any, job: types.Job) -> None:
        return None


BUILT_IN: typing.Final[tuple[runner.JobHandler[typing.Any, typing.Any], ...]] = (
    NoopHandler(),
    books.ParseBookHandler(),
    books.EmbedBookHandler(),
    books.SummarizeBookHandler(),
)


def register_all_handlers(registry: runner.Registry | None = None) -> None:
    """Register every built-in handler; calling it again is harmless, but another handler
    already registered for a built-in type is an error."""
    target = registry or runner.REGISTRY
    for handler in BUILT_IN:
        if target.get(handler.type) is not handler:
            target.register(handler)
