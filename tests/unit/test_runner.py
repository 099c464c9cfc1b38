"""Handlers, the registry and running one job (S9, S13), without a database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import random
import threading
import typing
import uuid

import pytest

import jobqueue
from jobqueue import runner, types

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


def make_job(job_type: str = "t", payload: typing.Any = None, attempts: int = 1) -> types.Job:
    return types.Job(
        id=uuid.uuid4(),
        type=job_type,
        status=types.JobStatus.RUNNING,
        payload=payload,
        result=None,
        attempts=attempts,
        max_attempts=3,
        run_at=NOW,
        locked_at=NOW,
        locked_by="w",
        error=None,
        created_at=NOW,
        updated_at=NOW,
    )


class BookPayload(typing.TypedDict):
    bookId: int
    filePath: str


class Seedlike:
    """A handler written the seed's way: an object with ``type`` and ``handle``."""

    type = "seedlike"

    async def handle(self, payload: dict[str, int], job: types.Job) -> dict[str, bool]:
        return {"success": payload["bookId"] > 0}


@pytest.fixture
def registry() -> runner.Registry:
    return runner.Registry()


async def test_seed_shaped_handler(registry: runner.Registry) -> None:
    registry.register(Seedlike())
    outcome = await runner.run_job(make_job("seedlike", {"bookId": 123}), registry)
    assert outcome.succeeded
    assert outcome.result_json == '{"success": true}'


def test_registering_a_type_twice_is_an_error(registry: runner.Registry) -> None:
    registry.register(Seedlike())
    with pytest.raises(
        ValueError, match="'seedlike' has two handlers: one from module test_runner"
    ):
        registry.register(Seedlike())


def test_a_handler_needs_a_type_and_a_handle_method(registry: runner.Registry) -> None:
    class NoHandle:
        type = "x"

    class NoType:
        def handle(self, payload: object, job: object) -> None: ...

    with pytest.raises(TypeError, match="no handle"):
        registry.register(NoHandle())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler type must be a string"):
        registry.register(NoType())  # type: ignore[arg-type]


async def test_sync_handlers_run_in_a_thread_async_on_the_loop(registry: runner.Registry) -> None:
    seen: dict[str, str] = {}

    @jobqueue.handler("sync", registry=registry)
    def sync_handler(payload: object, job: types.Job) -> str:
        seen["sync"] = threading.current_thread().name
        return "ok"

    @jobqueue.handler("async", registry=registry)
    async def async_handler(payload: object, job: types.Job) -> str:
        seen["async"] = threading.current_thread().name
        return "ok"

    with concurrent.futures.ThreadPoolExecutor(thread_name_prefix="handlers") as executor:
        for job_type in ("sync", "async"):
            outcome = await runner.run_job(make_job(job_type), registry, executor)
            assert outcome.result_json == '"ok"'
    assert seen["sync"].startswith("handlers")
    assert seen["async"] == threading.current_thread().name


async def test_a_blocking_handler_does_not_block_the_loop(registry: runner.Registry) -> None:
    release = threading.Event()

    @jobqueue.handler("blocking", registry=registry)
    def blocking(payload: object, job: types.Job) -> str:
        assert release.wait(timeout=10)
        return "released"

    with concurrent.futures.ThreadPoolExecutor() as executor:
        running = asyncio.create_task(runner.run_job(make_job("blocking"), registry, executor))
        await asyncio.sleep(0)  # the loop is free while the handler blocks its thread
        assert not running.done()
        release.set()
        assert (await running).result_json == '"released"'


async def test_handler_exception_becomes_a_readable_retryable_error(
    registry: runner.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    @jobqueue.handler("broken", registry=registry)
    async def broken(payload: dict[str, typing.Any], job: types.Job) -> None:
        payload["missing"]

    with caplog.at_level(logging.WARNING, logger="jobqueue.runner"):
        outcome = await runner.run_job(make_job("broken", {}), registry)
    assert outcome.error == "KeyError: 'missing'"
    assert outcome.retryable
    assert outcome.retry_delay == 30.0
    assert any("Traceback" not in m and "in broken" in m for m in caplog.messages)


async def test_typed_dict_payloads_are_checked(registry: runner.Registry) -> None:
    @jobqueue.handler("parse", registry=registry)
    async def parse(payload: BookPayload, job: types.Job) -> int:
        return payload["bookId"]

    good = await runner.run_job(make_job("parse", {"bookId": 1, "filePath": "a"}), registry)
    assert good.result_json == "1"
    cases = {
        "missing bookId": {"filePath": "a"},
        "'bookId' must be int, not a string": {"bookId": "1", "filePath": "a"},
        "must be an object (BookPayload), not an array": [1],
        "'filePath' must be str, not null": {"bookId": 1, "filePath": None},
    }
    for message, payload in cases.items():
        outcome = await runner.run_job(make_job("parse", payload), registry)
        assert outcome.error is not None
        assert outcome.error.startswith("invalid payload: PayloadError"), outcome.error
        assert message in outcome.error
        assert not outcome.retryable


async def test_payload_error_raised_by_a_handler_is_final(registry: runner.Registry) -> None:
    @jobqueue.handler("picky", registry=registry)
    async def picky(payload: object, job: types.Job) -> None:
        raise jobqueue.PayloadError("bookId must be positive")

    outcome = await runner.run_job(make_job("picky", {"bookId": -1}), registry)
    assert outcome.error == "invalid payload: PayloadError: bookId must be positive"
    assert not outcome.retryable


async def test_timeout_fails_the_run(registry: runner.Registry) -> None:
    never = asyncio.Event()

    @jobqueue.handler("slow", timeout=0.05, registry=registry)
    async def slow(payload: object, job: types.Job) -> None:
        await never.wait()

    outcome = await runner.run_job(make_job("slow"), registry)
    assert outcome.error == "timed out after 0.05s"
    assert outcome.retryable


async def test_worker_wide_default_timeout(registry: runner.Registry) -> None:
    never = asyncio.Event()

    @jobqueue.handler("slow", registry=registry)
    async def slow(payload: object, job: types.Job) -> None:
        await never.wait()

    outcome = await runner.run_job(make_job("slow"), registry, default_timeout=0.05)
    assert outcome.error == "timed out after 0.05s"


async def test_unusable_result_is_a_final_failure(registry: runner.Registry) -> None:
    @jobqueue.handler("weird", registry=registry)
    async def weird(payload: object, job: types.Job) -> object:
        return {"when": NOW}

    outcome = await runner.run_job(make_job("weird"), registry)
    assert outcome.error is not None
    assert "unusable result" in outcome.error
    assert "not JSON-serialisable" in outcome.error
    assert not outcome.retryable


async def test_unknown_type(registry: runner.Registry) -> None:
    outcome = await runner.run_job(make_job("nobody"), registry)
    assert outcome.error == "no handler registered for job type 'nobody'"


async def test_completion_carries_follow_ups(registry: runner.Registry) -> None:
    @jobqueue.handler("parent", registry=registry)
    async def parent(payload: object, job: types.Job) -> jobqueue.Completion:
        return jobqueue.Completion({"n": 1}, enqueue=[jobqueue.NewJob("child", {"of": 1})])

    outcome = await runner.run_job(make_job("parent"), registry)
    assert outcome.result_json == '{"n": 1}'
    assert [job.type for job in outcome.enqueue] == ["child"]


async def test_retry_policy_per_handler(registry: runner.Registry) -> None:
    @jobqueue.handler(
        "flaky", retry=jobqueue.RetryPolicy.exponential(2.0, jitter=0), registry=registry
    )
    async def flaky(payload: object, job: types.Job) -> None:
        raise RuntimeError("again")

    delays = [
        (await runner.run_job(make_job("flaky", attempts=n), registry)).retry_delay
        for n in (1, 2, 3, 4)
    ]
    assert delays == [2.0, 4.0, 8.0, 16.0]


def test_retry_policy_delays() -> None:
    assert runner.RetryPolicy().delay_after(5) == 30.0
    capped = runner.RetryPolicy.exponential(10.0, max_delay=60.0, jitter=0.0)
    assert [capped.delay_after(n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 60.0, 60.0]
    jittered = runner.RetryPolicy.exponential(10.0, jitter=0.5)
    rng = random.Random(7)
    delays = [jittered.delay_after(3, rng) for _ in range(200)]
    assert all(20.0 <= delay <= 40.0 for delay in delays)
    assert len(set(delays)) > 100
    with pytest.raises(ValueError, match="jitter must be between 0 and 1"):
        runner.RetryPolicy(jitter=2.0)


def test_options_are_declared_once_at_registration(registry: runner.Registry) -> None:
    class Tuned:  # the seed's shape, with options as plain attributes
        type = "tuned"
        timeout = 5.0
        retry = runner.RetryPolicy(delay=1.0)

        def handle(self, payload: typing.Any, job: types.Job) -> None:
            return None

    class Declared(runner.Handler):
        type = "declared"

        async def handle(self, payload: typing.Any, job: runner.RunningJob) -> None:
            return None

    tuned = Tuned()
    assert registry.register(tuned) is tuned
    registry.register(Declared())
    found = registry.get("tuned")
    assert found is not None
    assert (found.timeout, found.retry, found.is_async) == (5.0, Tuned.retry, False)
    assert found.validate_payload({"a": 1}) == {"a": 1}
    declared = registry.get("declared")
    assert isinstance(declared, Declared)
    assert (declared.timeout, declared.retry, declared.is_async) == (None, None, True)
