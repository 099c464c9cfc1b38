"""Waiting on conditions with deadlines: how the tests synchronise, never by fixed sleeps."""

from __future__ import annotations

import asyncio
import collections.abc
import time
import typing

_T = typing.TypeVar("_T")


async def eventually(
    check: collections.abc.Callable[[], collections.abc.Awaitable[_T]],
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> _T:
    """Await ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    check: collections.abc.Callable[[], _T],
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> _T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s (last: {value!r})")
        time.sleep(interval)
