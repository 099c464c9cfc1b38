"""Handlers and running one job (S9, S13).

A handler has a ``type`` and a ``handle(payload, job)`` method returning a JSON-serialisable
result, as in the seed; ``job`` is a ``RunningJob``, the job's row plus the worker's pool
(``job.pool``) for the handler's own reads and writes. ``async def handle`` runs on the
event loop; a plain ``def handle`` runs in the worker's thread pool, so a blocking handler
cannot stall other jobs. ``JobHandler`` declares the options that tune a handler, and the
base class ``Handler`` gives their defaults:

- ``timeout``: seconds a run may take; beyond it the run fails with ``timed out after Ns``.
- ``retry``: a ``RetryPolicy`` (fixed delay, the seed's 30 s, or exponential with jitter).
- ``validate_payload(payload)``: returns the payload to pass on, or raises ``PayloadError``
  (or ``ValueError``/``TypeError``/``KeyError``) when the payload does not fit the handler.
- ``is_async``: whether ``handle`` runs on the event loop (default: it is ``async def``).

A handler of the seed's shape (``type`` and ``handle`` only, options as plain attributes if
any) is still registered as it is: the registry declares it once, at registration.

``run_job`` executes one job and reports an ``Outcome``; it never raises for a handler's
fault, so the worker goes on whatever a handler does. Writing the outcome is the worker's.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextvars
import dataclasses
import functools
import inspect
import logging
import random
import time
import traceback
import typing
import uuid

from jobqueue import checks, logs, schedules, statements, types

logger = logging.getLogger("jobqueue.runner")

_Payload_contra = typing.TypeVar("_Payload_contra", contravariant=True)
_Result_co = typing.TypeVar("_Result_co", covariant=True)
_Function = typing.TypeVar("_Function", bound=collections.abc.Callable[..., typing.Any])

MAX_ERROR_LENGTH: typing.Final = 4000
TRACEBACK_FRAMES: typing.Final = 8


@dataclasses.dataclass(frozen=True, slots=True)
class RunningJob(types.Job):
    """A job as its handler gets it: the stored row, plus the pool of the worker running it,
    for the handler's own statements (``async with job.pool.connection() as conn``), and
    ``cancel_requested()``, which a synchronous handler polls to stop early when someone
    cancels its job (an async one gets ``asyncio.CancelledError`` at its next await)."""

    pool: statements.Pool = dataclasses.field(kw_only=True, repr=False, compare=False)
    # The worker's set of jobs asked to stop, shared by all its jobs: nothing made per job.
    cancels: collections.abc.Container[uuid.UUID] = dataclasses.field(
        default=frozenset(), kw_only=True, repr=False, compare=False
    )

    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel this job while it runs; safe from any thread."""
        return self.id in self.cancels


class SeedHandler(typing.Protocol[_Payload_contra, _Result_co]):
    """A handler as the seed has it (``JobHandler<Payload, Result>``): what ``register``
    accepts. Options it does not declare get their defaults."""

    @property
    def type(self) -> str: ...

    def handle(
        self, payload: _Payload_contra, job: RunningJob
    ) -> _Result_co | collections.abc.Awaitable[_Result_co]: ...


class JobHandler(SeedHandler[_Payload_contra, _Result_co], typing.Protocol):
    """What the worker runs: a handler with every option declared (see the module's
    docstring); ``Handler`` gives the defaults."""

    @property
    def timeout(self) -> float | None: ...

    @property
    def retry(self) -> RetryPolicy | None: ...

    @property
    def is_async(self) -> bool: ...

    def validate_payload(self, payload: typing.Any) -> typing.Any: ...


class PayloadError(ValueError):
    """The payload does not fit the handler: the job fails at once, without retries."""


@dataclasses.dataclass(frozen=True, slots=True)
class Completion:
    """A handler's result plus jobs to enqueue in the same transaction that completes this
    job: either the job is done and the follow-ups exist, or neither."""

    result: typing.Any = None
    enqueue: collections.abc.Sequence[types.NewJob] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Snooze:
    """What a handler returns to run its job again in ``seconds``, without using up an
    attempt (the job goes back to pending; its next run sees ``attempts`` one higher, and
    ``max_attempts`` grew by one with it)."""

    seconds: float

    def __post_init__(self) -> None:
        checks.check_seconds(self.seconds, "snooze seconds", allow_zero=False)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a failed job waits before its next attempt.

    ``RetryPolicy()`` is the seed's fixed 30 s. ``RetryPolicy.exponential()`` doubles the
    delay each attempt up to ``max_delay``, and ``jitter`` (0 to 1) takes up to that
    fraction off at random so that jobs failing together do not retry together."""

    delay: float = checks.DEFAULT_RETRY_DELAY_SECONDS
    exponential_backoff: bool = False
    max_delay: float = 3600.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        checks.check_seconds(self.delay, "retry delay")
        checks.check_seconds(self.max_delay, "max_delay")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    @classmethod
    def exponential(
        cls, base: float = 5.0, *, max_delay: float = 3600.0, jitter: float = 0.5
    ) -> RetryPolicy:
        return cls(delay=base, exponential_backoff=True, max_delay=max_delay, jitter=jitter)

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        delay = self.delay
        if self.exponential_backoff:
            # The exponent is capped: 2.0 ** 1024 overflows a float, and the cap is far past
            # any max_delay anyway.
            delay = min(self.max_delay, self.delay * 2.0 ** min(max(attempt - 1, 0), 64))
        if self.jitter:
            delay *= 1.0 - self.jitter * (rng or random).random()
        return delay


DEFAULT_RETRY: typing.Final = RetryPolicy()


class Handler:
    """Base of a handler with its options declared: set ``type``, write ``handle``, and
    override the options that differ from these defaults."""

    type: str
    timeout: float | None = None
    retry: RetryPolicy | None = None

    def handle(self, payload: typing.Any, job: RunningJob) -> typing.Any:
        raise NotImplementedError(f"{type(self).__name__} has no handle(payload, job)")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handle)

    def validate_payload(self, payload: typing.Any) -> typing.Any:
        return payload


class _Declared(Handler):
    """A seed-shaped handler with its options read once, when it is registered."""

    def __init__(self, handler: SeedHandler[typing.Any, typing.Any]) -> None:
        self.handler = handler
        self.type = handler.type
        self.timeout = getattr(handler, "timeout", None)
        self.retry = getattr(handler, "retry", None)
        self._is_async = bool(getattr(handler, "is_async", False)) or (
            inspect.iscoroutinefunction(handler.handle)
        )
        self._validate = getattr(handler, "validate_payload", None)

    def handle(self, payload: typing.Any, job: RunningJob) -> typing.Any:
        return self.handler.handle(payload, job)

    @property
    def is_async(self) -> bool:
        return self._is_async

    def validate_payload(self, payload: typing.Any) -> typing.Any:
        return self._validate(payload) if callable(self._validate) else payload


def declared(handler: SeedHandler[typing.Any, typing.Any]) -> JobHandler[typing.Any, typing.Any]:
    """``handler`` with every option declared: itself when it is a ``Handler``."""
    return handler if isinstance(handler, Handler) else _Declared(handler)


# --- registry -------------------------------------------------------------------------------


class Registry:
    """Handlers by job type. Registering a type twice is an error that names both sources,
    not a silent swap."""

    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler[typing.Any, typing.Any]] = {}
        self._sources: dict[str, str] = {}
        self._schedules: dict[str, schedules.Schedule] = {}
        self.plugins: set[str] = set()  # plugins whose handlers are registered here

    def register(
        self, handler: SeedHandler[typing.Any, typing.Any], *, source: str | None = None
    ) -> SeedHandler[typing.Any, typing.Any]:
        """Add ``handler``; ``source`` says where it comes from in error messages (default:
        the module that defines it)."""
        job_type = checks.check_name(getattr(handler, "type", None), "handler type")
        if not callable(getattr(handler, "handle", None)):
            raise TypeError(f"handler for {job_type!r} has no handle(payload, job) method")
        where = source or f"module {_defined_in(handler)}"
        if job_type in self._handlers:
            raise ValueError(
                f"job type {job_type!r} has two handlers: one from {self._sources[job_type]},"
                f" one from {where}"
            )
        self._handlers[job_type] = declared(handler)
        self._sources[job_type] = where
        return handler

    def get(self, job_type: str) -> JobHandler[typing.Any, typing.Any] | None:
        return self._handlers.get(job_type)

    def types(self) -> list[str]:
        return sorted(self._handlers)

    def add_schedule(self, schedule: schedules.Schedule) -> schedules.Schedule:
        """Add a periodic schedule: the workers of its queue run it. A name given twice is
        an error."""
        if not isinstance(schedule, schedules.Schedule):
            raise TypeError(f"expected a Schedule, not {type(schedule).__name__}")
        if schedule.name in self._schedules:
            raise ValueError(f"schedule {schedule.name!r} is registered twice")
        self._schedules[schedule.name] = schedule
        return schedule

    def list_schedules(self, queue: str | None = None) -> list[schedules.Schedule]:
        """The registered schedules (of ``queue``, if given), by name."""
        return [
            schedule
            for name, schedule in sorted(self._schedules.items())
            if queue is None or schedule.queue == queue
        ]


def _defined_in(handler: object) -> str:
    function = getattr(handler, "function", None)  # a FunctionHandler: its function's module
    return str(getattr(function, "__module__", None) or type(handler).__module__)


REGISTRY: typing.Final = Registry()


def register_handler(
    handler: SeedHandler[typing.Any, typing.Any],
) -> SeedHandler[typing.Any, typing.Any]:
    """Register ``handler`` with the default registry (the one workers use)."""
    return REGISTRY.register(handler)


def register_schedule(schedule: schedules.Schedule) -> schedules.Schedule:
    """Register a periodic schedule with the default registry: the workers of its queue
    run it (see ``jobqueue.Schedule``)."""
    return REGISTRY.add_schedule(schedule)


def _typed_dict_checker(
    annotation: object,
) -> collections.abc.Callable[[typing.Any], typing.Any] | None:
    """For a TypedDict payload annotation: a check of required keys and plain value types."""
    if not (isinstance(annotation, type) and typing.is_typeddict(annotation)):
        return None
    hints = typing.get_type_hints(annotation)
    required: frozenset[str] = getattr(annotation, "__required_keys__", frozenset())
    name = annotation.__name__

    def check(payload: typing.Any) -> typing.Any:
        if not isinstance(payload, dict):
            raise PayloadError(f"payload must be an object ({name}), not {_json_kind(payload)}")
        missing = sorted(required - payload.keys())
        if missing:
            raise PayloadError(f"payload is missing {', '.join(missing)} ({name})")
        for key, hint in hints.items():
            plain = typing.get_origin(hint) or hint
            if key in payload and isinstance(plain, type) and plain is not typing.Any:
                value = payload[key]
                accepted = (int, float) if plain is float else plain
                if not isinstance(value, accepted) or (
                    plain in (int, float) and isinstance(value, bool)
                ):
                    raise PayloadError(
                        f"payload field {key!r} must be {plain.__name__},"
                        f" not {_json_kind(value)} ({name})"
                    )
        return payload

    return check


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return kinds.get(type(value), type(value).__name__)


@dataclasses.dataclass(frozen=True)
class FunctionHandler(Handler):
    """A handler made from a function by ``@handler``."""

    type: str
    function: collections.abc.Callable[..., typing.Any]
    timeout: float | None = None
    retry: RetryPolicy | None = None

    def handle(self, payload: typing.Any, job: RunningJob) -> typing.Any:
        return self.function(payload, job)

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    @functools.cached_property
    def _payload_check(self) -> collections.abc.Callable[[typing.Any], typing.Any] | None:
        try:
            hints = typing.get_type_hints(self.function)
        except (NameError, TypeError):  # an annotation that cannot be resolved: no check
            return None
        first = next(iter(inspect.signature(self.function).parameters), None)
        return _typed_dict_checker(hints.get(first)) if first else None

    def validate_payload(self, payload: typing.Any) -> typing.Any:
        return self._payload_check(payload) if self._payload_check else payload


def handler(
    job_type: str,
    *,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    registry: Registry | None = None,
) -> collections.abc.Callable[[_Function], _Function]:
    """Register a function ``(payload, job) -> result`` as the handler of ``job_type``. When
    the payload parameter is annotated with a TypedDict, payloads are checked against it."""

    def register(function: _Function) -> _Function:
        made = FunctionHandler(job_type, function, timeout, retry)
        (registry or REGISTRY).register(made)
        return function

    return register


# --- running one job --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one run: a result to store, or an error and whether to retry."""

    job: types.Job
    duration: float
    # The result as JSON text, serialised once: checking that it can be stored is writing it.
    result_json: str | None = None
    enqueue: collections.abc.Sequence[types.NewJob] = ()
    error: str | None = None
    retryable: bool = True
    retry_delay: float = DEFAULT_RETRY.delay
    snooze: float | None = None  # seconds: run again then, no attempt used

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.snooze is None


def _short(text: str) -> str:
    """At most ``MAX_ERROR_LENGTH`` characters, and no NUL, which a text column cannot hold."""
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def describe_error(error: BaseException) -> str:
    """``"KeyError: 'bookId'"``: the exception's type and message, kept short."""
    message = str(error)
    return _short(f"{type(error).__name__}: {message}" if message else type(error).__name__)


def _trimmed_traceback(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)[-TRACEBACK_FRAMES:]
    return "".join(traceback.format_list(frames)).rstrip()


async def run_job(
    job: RunningJob,
    registry: Registry,
    executor: concurrent.futures.Executor | None = None,
    *,
    default_timeout: float | None = None,
    default_retry: RetryPolicy = DEFAULT_RETRY,
) -> Outcome:
    """Run ``job`` with its handler and report the outcome; handler failures, timeouts and
    bad payloads become a failed ``Outcome``. Only cancellation propagates. A handler
    without its own ``timeout`` or ``retry`` gets the defaults given."""
    job_id = logs.id_text(job.id) if logger.isEnabledFor(logging.INFO) else None
    if job_id is not None:
        logs.info_later(logger, f"[Runner] Executing job {job_id} (type: {job.type})")
    started = time.monotonic()
    if isinstance(job.payload, types.Undecodable):
        return _failed(job, started, f"payload cannot be decoded: {job.payload.reason}", None)
    found = registry.get(job.type)
    if found is None:
        return _failed(job, started, f"no handler registered for job type {job.type!r}", None)
    retry = found.retry or default_retry
    timeout = found.timeout or default_timeout
    try:
        payload = found.validate_payload(job.payload)
    except (PayloadError, ValueError, TypeError, KeyError) as error:
        return _failed(job, started, f"invalid payload: {describe_error(error)}", None)
    except Exception as error:  # a broken validator: the handler's fault, maybe fixed soon
        return _failed(job, started, f"payload check failed: {describe_error(error)}", retry)
    try:
        if timeout is None:  # most handlers: no timer to set and cancel for each job
            value = await _call(found, payload, job, executor)
        else:
            async with asyncio.timeout(timeout):
                value = await _call(found, payload, job, executor)
    except TimeoutError:
        return _failed(job, started, f"timed out after {timeout:g}s", retry)
    except PayloadError as error:
        return _failed(job, started, f"invalid payload: {describe_error(error)}", None)
    except Exception as error:  # a handler's failure is the job's, not the worker's
        logger.warning(
            "[Runner] Job %s raised %s\n%s",
            job.id,
            describe_error(error),
            _trimmed_traceback(error),
        )
        return _failed(job, started, describe_error(error), retry)
    if isinstance(value, Snooze):
        duration = time.monotonic() - started
        if job_id is not None:
            logs.info_later(logger, f"[Runner] Job {job_id} snoozed for {value.seconds:g}s")
        return Outcome(job, duration, snooze=value.seconds)
    if isinstance(value, Completion):
        result, follow_ups = value.result, list(value.enqueue)
    else:
        result, follow_ups = value, []
    try:
        result_json = checks.to_json_text(result, "result")
    except (TypeError, ValueError) as error:  # the same result would fail again: no retry
        return _failed(job, started, f"handler returned an unusable result: {error}", None)
    for follow_up in follow_ups:
        try:
            if not isinstance(follow_up, types.NewJob):
                raise TypeError(f"expected a NewJob, not {type(follow_up).__name__}")
            checks.check_new_job(follow_up)
        except (TypeError, ValueError) as error:
            return _failed(
                job, started, f"handler returned an invalid follow-up job: {error}", None
            )
    duration = time.monotonic() - started
    if job_id is not None:
        logs.info_later(logger, f"[Runner] Job {job_id} completed in {round(duration * 1000)}ms")
    return Outcome(job, duration, result_json=result_json, enqueue=follow_ups)


async def _call(
    found: JobHandler[typing.Any, typing.Any],
    payload: typing.Any,
    job: RunningJob,
    executor: concurrent.futures.Executor | None,
) -> typing.Any:
    if not runs_in_thread(found):
        return await typing.cast(collections.abc.Awaitable[typing.Any], found.handle(payload, job))
    loop = asyncio.get_running_loop()
    # The thread runs in a copy of this task's context: context variables the handler's
    # caller set (a request id for logging, say) are seen there too, as on the loop.
    call = functools.partial(contextvars.copy_context().run, found.handle, payload, job)
    value = await loop.run_in_executor(executor, call)
    if inspect.isawaitable(value):
        value = await value
    return value


def runs_in_thread(found: JobHandler[typing.Any, typing.Any]) -> bool:
    """Whether the handler's ``handle`` is synchronous, and so runs in a thread, which
    cancelling its job cannot stop."""
    return not found.is_async


def _failed(job: types.Job, started: float, error: str, retry: RetryPolicy | None) -> Outcome:
    duration = time.monotonic() - started
    logger.warning("[Runner] Job %s failed in %dms: %s", job.id, round(duration * 1000), error)
    return Outcome(
        job,
        duration,
        error=_short(error),
        retryable=retry is not None,
        retry_delay=retry.delay_after(job.attempts) if retry else 0.0,
    )
