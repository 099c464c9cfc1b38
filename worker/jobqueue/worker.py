"""The worker: claims jobs, runs them with bounded concurrency, writes their outcomes (S10-S14).

One supervisor loop claims as many ready jobs as there are free slots, in one statement,
and starts a task per job. It sleeps until something can have changed: a ``jobqueue_ready``
NOTIFY for its queue (instant pickup), a slot freeing up, the next delayed job falling due,
a jittered poll (the fallback, and the only wake-up with ``listen=False``, e.g. behind
PgBouncer in transaction mode), or a stop.

This module is the supervisor: claiming, the running jobs, their heartbeats and leases,
stopping. Its background loops are in ``loops``: the outcome writer (every finished job it
has in one statement), the LISTEN connection, the stale-job rescue and the statistics'
compaction. A job stays locked (and heartbeated) until its outcome is written.

Once, never lost, never twice at once:

- Every background task (writer, heartbeat, listener, statistics, rescue) is supervised. A
  database error that passes by itself (``db.classify_error``) is retried with backoff; any
  other failure is fatal to the worker: it is logged with its cause, ``/healthz`` turns red,
  claiming stops, running jobs are cancelled and handed back (their attempt counted, so a
  job that keeps killing workers still ends), and ``run()`` raises ``WorkerFailedError`` so
  the process exits non-zero and its pod restarts.
- A running job is the worker's only while its lease holds: the lease starts at the claim
  and is renewed by every heartbeat the database confirms. Other workers rescue a job whose
  heartbeat is ``stale_threshold`` old; a worker whose heartbeats cannot be written stops
  its own jobs at half that, well before, so a live worker's job is never run twice at once.
  A synchronous handler cannot be stopped (Python threads cannot be killed): its worker
  then stops itself instead.
- Each worker also rescues its queue's stale jobs now and then (one worker at a time, by an
  advisory lock), so a killed worker's jobs run again without an operator or a person.

Stopping is soft, then hard: ``stop()`` stops claiming and lets running jobs finish within
``grace_timeout``; after that, or on ``stop(hard=True)`` (a second signal), the jobs still
running are cancelled and handed back to ``pending`` at once, their attempt given back.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import logging
import random
import signal
import socket
import threading
import time
import typing
import uuid

from jobqueue import checks, db, loops, metrics, plugins, runner, settings, types
from jobqueue import queue as queue_module

logger = logging.getLogger("jobqueue.worker")

READY_CHANNEL: typing.Final = loops.READY_CHANNEL


Clock: typing.TypeAlias = loops.Clock


def _database_clock() -> None:
    return None


def _time_by(clock: Clock) -> datetime.datetime:
    """The time ``clock`` gives, or this machine's when it leaves it to the database."""
    return clock() or datetime.datetime.now(datetime.UTC)


_CANCELLED_WHILE_RUNNING: typing.Final = "cancelled while running"


class WorkerFailedError(RuntimeError):
    """The worker stopped because one of its parts failed; the message says which and why."""


def default_worker_id() -> str:
    """``<hostname>-<random>``: the pod name in Kubernetes, unique across restarts."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def _from_environment(setting: settings.Setting) -> typing.Any:
    """A field default: the setting's environment variable, else its declared default."""
    return dataclasses.field(default_factory=setting.from_env, metadata={"setting": setting})


# A worker whose claims are slow (``Claimer``; settings.SLOW_CLAIM: a claim of a hundred
# jobs takes a few milliseconds, one that reads past hundreds of thousands of dead index
# entries, vacuum held back by a long transaction, tenths of a second) claims after its last
# claim's place. A full claim still runs now and then, taking at most this share of the
# time, at most once a second; the place keeps this much of a margin before it (and after an
# empty claim moves to the worker's clock less it: a clock further ahead of the database's than
# that leaves new jobs to the full claims).
FULL_CLAIM_SHARE: typing.Final = 0.05
FULL_CLAIM_INTERVAL: typing.Final = 1.0
CLAIM_MARGIN: typing.Final = datetime.timedelta(seconds=1)

# The longest a stopping worker waits to say so (``Worker._forget``): a pod's grace period
# is for its jobs, not for a database that is away.
_FORGET_WITHIN: typing.Final = 2.0


# How often a worker of a queue with limits whose last claim found nothing claims again:
# a rate limit's tokens come back with time, with nothing sent to wake it.
LIMITED_IDLE_CLAIM: typing.Final = 1.0


class Claimer:
    """How a worker claims its jobs. Normally with a full claim (``job_claim``). When one
    takes ``slow_claim`` seconds or longer (0: every one), the index it reads is full of
    dead entries at its head (a long transaction holds vacuum back, or vacuum lags): then
    claims start at the place of the last one (``job_claim_after``), and a full claim,
    which also finds what lies before that place (a job put back in line, a lower
    priority, a transaction that committed late), runs once its turn comes: after at least
    FULL_CLAIM_INTERVAL, and 1 / FULL_CLAIM_SHARE times as long as the last one took. A
    fast full claim ends it. In a queue with limits (migration 0011) it claims within them
    (``job_claim_limited``) instead, taking turns between concurrency keys."""

    def __init__(
        self,
        queue: queue_module.Queue,
        worker_id: str,
        *,
        queue_name: str,
        types_: collections.abc.Collection[str] | None,
        clock: Clock,
        job_factory: collections.abc.Callable[..., types.Job] = types.Job,
        slow_claim: float | None = None,
    ) -> None:
        self.queue = queue
        self.slow_claim = typing.cast(
            float, settings.SLOW_CLAIM.default if slow_claim is None else slow_claim
        )
        self.worker_id = worker_id
        self.queue_name = queue_name
        self.types = types_
        self.clock = clock
        self.job_factory = job_factory
        # While claims are slow: where the next one starts, and when a full one is due.
        self.after: tuple[int, datetime.datetime] | None = None
        self.full_claim_due = 0.0
        # Whether the queue has limits (its jobs are then claimed within them, and the other
        # claims give nothing), and the concurrency key served last: where the next limited
        # claim's turns start.
        self.limited = False
        self.after_key: str | None = None

    async def claim(self, limit: int, sent: float | None = None) -> list[types.Job]:
        """Up to ``limit`` jobs; ``sent``: the monotonic time the caller began at. A claim
        that finds nothing looks whether the queue's limits came or went, and if so claims
        again the other way: no claim reads the flag while jobs come."""
        for _ in range(2):
            if self.limited:
                jobs = await self._claim_jobs(limit, limited=True, after_key=self.after_key)
                self.after_key = _last_key_of(jobs, self.after_key)
            else:
                jobs = await self._claim_in_order(limit, sent)
            if jobs or not await self._limits_changed():
                break
        return jobs

    async def _claim_jobs(
        self,
        limit: int,
        *,
        after: tuple[int, datetime.datetime] | None = None,
        limited: bool = False,
        after_key: str | None = None,
    ) -> list[types.Job]:
        """``Queue.claim_jobs`` for this worker, its queue and its types."""
        return await self.queue.claim_jobs(
            self.worker_id,
            limit=limit,
            queue=self.queue_name,
            types_=self.types,
            now=self.clock(),
            job_factory=self.job_factory,
            after=after,
            limited=limited,
            after_key=after_key,
        )

    async def _limits_changed(self) -> bool:
        limited = await self.queue.queue_has_limits(self.queue_name)
        if limited == self.limited:
            return False
        self.limited = limited
        logger.info(
            "[Worker] Queue %s %s: claiming %s",
            self.queue_name,
            "has limits" if limited else "has no limits any more",
            "within them" if limited else "in order",
        )
        return True

    async def _claim_in_order(self, limit: int, sent: float | None) -> list[types.Job]:
        sent = time.monotonic() if sent is None else sent
        full = self.after is None or sent >= self.full_claim_due
        jobs = await self._claim_jobs(limit, after=None if full else self.after)
        place = _place_of(jobs)
        if not full:
            # Nothing of this priority from the place on was ready: what comes later is due
            # from now on, so the next claim need not read again what this one read past.
            self.after = place or self._moved_on(self.after)
            return jobs
        took = time.monotonic() - sent
        if took < self.slow_claim:
            if self.after is not None:
                logger.info("[Worker] Claims are fast again (%.0f ms): full claims", took * 1000)
            self.after = None
            return jobs
        every = max(FULL_CLAIM_INTERVAL, took / FULL_CLAIM_SHARE)
        if self.after is None:
            logger.warning(
                "[Worker] A claim took %.0f ms (dead index entries: is a long transaction"
                " holding vacuum back?): claiming after the last claim's place, with a full"
                " claim every %.1f s",
                took * 1000,
                every,
            )
        self.full_claim_due = time.monotonic() + every
        # Nothing claimed: from now on, at the default priority.
        now = _time_by(self.clock)
        self.after = place or (0, now - CLAIM_MARGIN)
        return jobs

    def _moved_on(
        self, after: tuple[int, datetime.datetime] | None
    ) -> tuple[int, datetime.datetime] | None:
        """``after`` moved up to now less CLAIM_MARGIN at its priority (never back)."""
        if after is None:
            return None
        now = _time_by(self.clock)
        return after[0], max(after[1], now - CLAIM_MARGIN)

    def full_claim_in(self) -> float | None:
        """While claims start at a place: the seconds until the next full claim is due."""
        return None if self.after is None else self.full_claim_due - time.monotonic()


def _last_key_of(jobs: collections.abc.Sequence[types.Job], after: str | None) -> str | None:
    """The concurrency key a limited claim served last: it walks the keys in order from the
    one after ``after`` to the last, then from the first around to ``after``. ``after`` if
    no job had a key."""
    keys = {job.concurrency_key for job in jobs if job.concurrency_key is not None}
    if not keys:
        return after
    around = [key for key in keys if after is not None and key <= after]
    return max(around or keys)


def _place_of(jobs: collections.abc.Sequence[types.Job]) -> tuple[int, datetime.datetime] | None:
    """Where a claim ended: its lowest priority, and the earliest due time of its jobs of
    that priority less CLAIM_MARGIN (a job committed a little after it was due lands just
    before the place of jobs claimed meanwhile)."""
    if not jobs:
        return None
    lowest = min(job.priority for job in jobs)
    earliest = min(job.run_at for job in jobs if job.priority == lowest)
    return lowest, earliest - CLAIM_MARGIN


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """How a worker runs. Each field is a setting of ``jobqueue.settings`` (its help says
    what it does); one not given comes from its environment variable, else its declared
    default, exactly as for ``jobqueue worker``. Durations are in seconds.

    ``stale_threshold``: a running job with no heartbeat for this long belongs to a dead
    worker and is rescued; this worker gives up its own jobs at half of it when it cannot
    write heartbeats. ``rescue_interval``: how often the worker looks for stale jobs of its
    queue (0: never, e.g. when only the operator should)."""

    queue: str = _from_environment(settings.QUEUE)
    concurrency: int = _from_environment(settings.CONCURRENCY)
    poll_interval: float = _from_environment(settings.POLL_INTERVAL)
    worker_id: str | None = _from_environment(settings.WORKER_ID)
    types: collections.abc.Sequence[str] | None = _from_environment(settings.TYPES)
    listen: bool = _from_environment(settings.LISTEN)
    listen_url: str | None = _from_environment(settings.LISTEN_URL)
    burst: bool = _from_environment(settings.BURST)
    heartbeat_interval: float = _from_environment(settings.HEARTBEAT_INTERVAL)
    grace_timeout: float = _from_environment(settings.GRACE_TIMEOUT)
    cancel_grace: float = _from_environment(settings.CANCEL_GRACE)
    job_timeout: float | None = _from_environment(settings.JOB_TIMEOUT)
    stale_threshold: float = _from_environment(settings.STALE_THRESHOLD)
    rescue_interval: float = _from_environment(settings.RESCUE_INTERVAL)
    slow_claim: float = _from_environment(settings.SLOW_CLAIM)
    max_backoff: float = _from_environment(settings.MAX_BACKOFF)
    stats_interval: float = _from_environment(settings.STATS_INTERVAL)
    pool_size: int | None = _from_environment(settings.POOL_SIZE)
    pool_timeout: float = _from_environment(settings.POOL_TIMEOUT)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            setting: settings.Setting = field.metadata["setting"]
            object.__setattr__(self, field.name, setting.check(getattr(self, field.name)))
        checks.check_name(self.queue, "queue")
        if self.worker_id is not None:
            checks.check_name(self.worker_id, "worker id")
        # The lease lapses at half the threshold; a few heartbeats must fit in it, or a
        # single slow one would stop every job.
        if self.stale_threshold < 6 * self.heartbeat_interval:
            raise settings.SettingError(
                f"stale_threshold ({self.stale_threshold:g}s) must be at least 6 times"
                f" heartbeat_interval ({self.heartbeat_interval:g}s)"
            )

    @property
    def pool_max_size(self) -> int:
        """``pool_size``, or enough for the claim, writer and heartbeat connections plus
        one per running job for handlers that use the database."""
        return self.pool_size or min(3 + self.concurrency, 20)

    @property
    def lease(self) -> float:
        """Seconds a running job stays this worker's without a confirmed heartbeat."""
        return self.stale_threshold / 2


class _HandlerThreads(concurrent.futures.ThreadPoolExecutor):
    """The thread pool for synchronous handlers, counting the calls in progress."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="jobqueue-handler")
        self.busy = 0
        self._busy_lock = threading.Lock()

    def submit(
        self,
        fn: collections.abc.Callable[..., typing.Any],
        /,
        *args: typing.Any,
        **kwargs: typing.Any,
    ) -> concurrent.futures.Future[typing.Any]:
        def counted() -> typing.Any:
            with self._busy_lock:
                self.busy += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._busy_lock:
                    self.busy -= 1

        return super().submit(counted)


class Worker:
    """One worker process's job loop. ``await worker.run()`` runs it until it is stopped
    (or, with ``burst``, until no job is ready); it raises ``WorkerFailedError`` when a
    part of it failed."""

    def __init__(
        self,
        queue: queue_module.Queue,
        config: WorkerConfig | None = None,
        *,
        registry: runner.Registry | None = None,
        clock: Clock | None = None,
        metrics_registry: metrics.Registry | None = None,
    ) -> None:
        self.queue = queue
        self.config = config or WorkerConfig()
        # The time the worker's statements use: None means the database's own now(), the
        # one clock every worker and rescuer shares. Tests pass a clock they move.
        self.clock: Clock = clock or _database_clock
        self.registry = registry or runner.REGISTRY
        self.worker_id = self.config.worker_id or default_worker_id()
        # Handlers without a retry policy wait the queue's retry_delay (the seed's 30 s).
        self._default_retry = runner.RetryPolicy(delay=queue.retry_delay)
        self.types = list(self.config.types) if self.config.types else self.registry.types()
        unknown = sorted(set(self.types) - set(self.registry.types()))
        if unknown:
            raise ValueError(f"no handler registered for job types: {', '.join(unknown)}")
        if not self.types:
            raise ValueError("no job handlers are registered: nothing to run")
        # The periodic schedules declared in code for this worker's queue: it runs them.
        self.schedules = self.registry.list_schedules(self.config.queue)
        self.started_at: datetime.datetime | None = None
        self.processed = 0
        self.failed = 0
        self.rescued = 0
        self.is_running = False
        self.last_claim_ok = False
        self.last_tick = time.monotonic()
        self.failure: str | None = None  # why the worker stopped itself, once it has
        self._active: dict[uuid.UUID, asyncio.Task[bool]] = {}
        # Locked by us: running, or its outcome not yet written.
        self._held: dict[uuid.UUID, types.Job] = {}
        # When each held job's lock was last known good (monotonic, taken before the claim
        # or heartbeat statement was sent, so never later than the database's own time).
        self._lease_from: dict[uuid.UUID, float] = {}
        # Jobs stopped before their end, and why: their outcome is not written.
        self._abandoned: dict[uuid.UUID, str] = {}
        # Held jobs someone asked to cancel (``cancel_jobs``): their runs are being stopped,
        # and their outcome, whatever it is, makes them cancelled. Shared with the jobs
        # themselves, for ``RunningJob.cancel_requested()``.
        self._cancels: set[uuid.UUID] = set()
        self._wakeup = asyncio.Event()
        self._writer = loops.OutcomeWriter(
            queue,
            self.worker_id,
            self.clock,
            max_backoff=self.config.max_backoff,
            report=self._database_error,
            written=self._written,
            wakeup=self._wakeup,
        )
        self._listener = loops.Listener(
            queue,
            self.worker_id,
            self.config.queue,
            max_backoff=self.config.max_backoff,
            report=self._database_error,
            wakeup=self._wakeup,
            cancel=lambda job_id: self.cancel_running([job_id]),
            url=self.config.listen_url,
        )
        self._stopping = asyncio.Event()
        self._hard_stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._executor: _HandlerThreads | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._metrics = metrics.WorkerMetrics(self.config.queue, metrics_registry)
        self._metrics.prepare(self.types)
        # Read when scraped, not set at every job's start and end.
        self._metrics.active_jobs.set_function(lambda: len(self._active))
        # Claimed rows become the jobs handlers get, with no copy per job.
        self._running_job = functools.partial(
            runner.RunningJob, pool=queue.pool, cancels=self._cancels
        )
        self._claimer = Claimer(
            queue,
            self.worker_id,
            queue_name=self.config.queue,
            types_=self.types,
            clock=self.clock,
            job_factory=self._running_job,
            slow_claim=self.config.slow_claim,
        )

    # --- state ----------------------------------------------------------------------------

    @property
    def active_jobs(self) -> int:
        return len(self._active)

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up (instant pickup)."""
        return self._listener.listening

    def state(self) -> dict[str, typing.Any]:
        """The seed's ``getWorkerState()``: ``{is_running, active_jobs, ...}``."""
        return {
            "is_running": self.is_running,
            "active_jobs": self.active_jobs,
            "worker_id": self.worker_id,
            "queue": self.config.queue,
            "concurrency": self.config.concurrency,
            "types": list(self.types),
            "schedules": [schedule.name for schedule in self.schedules],
            "processed": self.processed,
            "failed": self.failed,
            "rescued": self.rescued,
            "started_at": self.started_at,
            "listening": self.listening,
            "stopping": self._stopping.is_set(),
            "failure": self.failure,
        }

    def healthy(self) -> tuple[bool, str]:
        """Liveness: nothing has failed, and the supervisor has ticked recently (it ticks at
        least every poll)."""
        if self.failure is not None:
            return False, self.failure
        limit = 3 * self.config.poll_interval + 60
        age = time.monotonic() - self.last_tick
        if self.is_running and age > limit:
            return False, f"supervisor loop has not run for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Readiness: running, not stopping, and the last claim reached the database."""
        if self.failure is not None:
            return False, self.failure
        if not self.is_running or self._stopping.is_set():
            return False, "not running"
        if not self.last_claim_ok:
            return False, "cannot claim jobs: database unavailable"
        return True, "ok"

    # --- control --------------------------------------------------------------------------

    def stop(self, *, hard: bool = False) -> None:
        """Stop claiming; running jobs get ``grace_timeout`` to finish. ``hard``: cancel them
        now and hand them back to pending."""
        self._stopping.set()
        if hard:
            self._hard_stop.set()
        self._wakeup.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT once: graceful stop; twice: hard stop (S14)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            logger.warning(
                "[Worker] Received %s again, cancelling %d active jobs", name, self.active_jobs
            )
            self.stop(hard=True)
        else:
            logger.info("[Worker] Received %s, initiating graceful shutdown...", name)
            self.stop()

    def _fail(self, what: str, error: BaseException | str) -> None:
        """A part of the worker broke: record why, log it with its cause, stop hard."""
        if self.failure is None:
            reason = error if isinstance(error, str) else runner.describe_error(error)
            self.failure = f"{what} failed: {reason}"
            logger.critical(
                "[Worker] %s; stopping worker %s",
                self.failure,
                self.worker_id,
                exc_info=error if isinstance(error, BaseException) else None,
            )
        self.stop(hard=True)

    # --- main loop ------------------------------------------------------------------------

    async def run(self) -> None:
        if self.is_running:
            raise RuntimeError(f"worker {self.worker_id} is already running")
        self.is_running = True
        self.started_at = started_at = datetime.datetime.now(datetime.UTC)
        self._stopped.clear()
        logger.info("[Worker] Starting worker %s", self.worker_id)
        logger.info(
            "[Worker] queue=%s concurrency=%d poll_interval=%gs types=%s listen=%s"
            " stale_threshold=%gs rescue_interval=%gs",
            self.config.queue,
            self.config.concurrency,
            self.config.poll_interval,
            ",".join(self.types),
            self.config.listen,
            self.config.stale_threshold,
            self.config.rescue_interval,
        )
        self._metrics.concurrency.set(self.config.concurrency)
        self._metrics.identify(self.worker_id)
        self._executor = _HandlerThreads(self.config.concurrency)
        self._writer_task = self._spawn("outcome writer", self._writer.run())
        self._spawn("heartbeat", self._heartbeat())
        self._spawn(
            "announcements",
            loops.announce_worker(
                self.queue,
                self.worker_id,
                queue_name=self.config.queue,
                concurrency=self.config.concurrency,
                started_at=started_at,
                interval=self.config.heartbeat_interval,
                clock=self.clock,
                report=self._database_error,
            ),
        )
        if self.config.listen:
            self._spawn("listener", self._listener.run())
        self._spawn(
            "statistics",
            loops.compact_counts(
                self.queue, interval=self.config.stats_interval, report=self._database_error
            ),
        )
        if self.config.rescue_interval > 0:
            self._spawn(
                "stale-job rescue",
                loops.rescue_stale_jobs(
                    self.queue,
                    self.config.queue,
                    threshold=self.config.stale_threshold,
                    interval=self.config.rescue_interval,
                    clock=self.clock,
                    report=self._database_error,
                    rescued=self._rescued,
                ),
            )
        if self.schedules:
            logger.info(
                "[Worker] Running schedules %s",
                ", ".join(f"{schedule.name} ({schedule.timing})" for schedule in self.schedules),
            )
            self._spawn(
                "schedules",
                loops.run_schedules(
                    self.queue,
                    self.schedules,
                    clock=self.clock,
                    max_backoff=self.config.max_backoff,
                    report=self._database_error,
                ),
            )
        try:
            await self._supervise()
        except Exception as error:
            self._fail("claiming", error)
        finally:
            await self._drain()
            helpers = list(self._background)
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._forget()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self.is_running = False
            self._stopped.set()
            logger.info("[Worker] Worker %s stopped", self.worker_id)
        if self.failure is not None:
            raise WorkerFailedError(f"worker {self.worker_id}: {self.failure}")

    def _spawn(
        self, name: str, work: collections.abc.Coroutine[typing.Any, typing.Any, None]
    ) -> asyncio.Task[None]:
        """Run a background part of the worker; if it ever fails, so does the worker."""

        async def supervised() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._fail(name, error)

        task = asyncio.create_task(supervised(), name=f"jobqueue-{name.replace(' ', '-')}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _supervise(self) -> None:
        # Never wait longer than a poll between claims: after an outage the queue is back
        # in business within one poll interval, not after a long backoff.
        poll_seconds = self.config.poll_interval
        backoff = loops.Backoff(min(self.config.max_backoff, max(1.0, poll_seconds)))
        while not self._stopping.is_set():
            self.last_tick = time.monotonic()
            free = self.config.concurrency - len(self._active)
            # Cleared before looking, so that anything after this point wakes us; with no
            # free slot only a finishing job (or a stop) matters, and it sets the event.
            self._wakeup.clear()
            # No free slot: wait for one, but tick at least every poll interval anyway, so
            # that /healthz can tell a busy worker from a stuck one.
            timeout = self.config.poll_interval
            if free > 0:
                sent = time.monotonic()
                try:
                    jobs = typing.cast(
                        list[runner.RunningJob], await self._claimer.claim(free, sent)
                    )
                except Exception as error:
                    if not loops.retryable(error):
                        raise
                    self._database_error("claim", error)
                    await self._sleep(backoff.next())
                    continue
                self.last_claim_ok = True
                backoff.reset()
                self._metrics.claim_batch.observe(len(jobs))
                self._start(jobs, sent)
                if len(jobs) == free:
                    continue  # there may be more ready: claim again once a slot frees
                # Burst ends once nothing is ready and every outcome is written (a retry
                # written with no delay is ready again at once).
                if self.config.burst and not jobs and not self._held:
                    logger.info("[Worker] No job is ready: burst mode ends")
                    return
                if jobs:  # let them start before the next statement is built and sent
                    await asyncio.sleep(0)
                timeout = await self._idle_timeout()
            await self._sleep(timeout)

    async def _idle_timeout(self) -> float:
        """How long to sleep when no job is ready: the jittered poll interval, or less when
        a delayed job falls due sooner. While claims are slow, until the next full claim is
        due instead of asking when the next job falls due: that question reads the same
        dead index entries."""
        poll = self.config.poll_interval * random.uniform(0.8, 1.0)
        if (full_claim_in := self._claimer.full_claim_in()) is not None:
            return max(0.0, min(poll, full_claim_in))
        if self._claimer.limited:
            # Rate limits refill with time, and nothing is sent when they do.
            poll = min(poll, LIMITED_IDLE_CLAIM)
        try:
            due = await self.queue.next_run_at(queue=self.config.queue, types_=self.types)
        except Exception as error:
            if not loops.retryable(error):
                raise
            self._database_error("next_run_at", error)
            return poll
        if due is None:
            return poll
        until_due = (due - self._now()).total_seconds()
        return max(0.0, min(poll, until_due))

    async def _sleep(self, seconds: float | None) -> None:
        """Sleep until woken (NOTIFY, free slot, stop) or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    def _now(self) -> datetime.datetime:
        return _time_by(self.clock)

    def _database_error(self, operation: str, error: BaseException) -> None:
        self.last_claim_ok = self.last_claim_ok and operation != "claim"
        self._metrics.database_error(operation)
        logger.error(
            "[Worker] Database error during %s, will retry: %s",
            operation,
            db.describe_database_error(error),
        )

    # --- one job --------------------------------------------------------------------------

    def _start(self, jobs: list[runner.RunningJob], claimed_at: float) -> None:
        now = self._now()
        for job in jobs:
            self._held[job.id] = job
            self._lease_from[job.id] = claimed_at
            self._metrics.queue_wait(job.type, max((now - job.run_at).total_seconds(), 0.0))
            # Claimed again while a run of ours is still going: rescued from under us (our
            # heartbeats late, a frozen process thawed), and the run being stopped or about
            # to be. The new run waits for it, so one job never runs twice here at once.
            previous = self._active.get(job.id)
            if previous is not None:
                self._abandoned.pop(job.id, None)  # the marker was the old run's
            self._active[job.id] = asyncio.create_task(
                self._run_one(job, previous), name="jobqueue-job"
            )

    async def _run_one(
        self, job: runner.RunningJob, previous: asyncio.Task[bool] | None = None
    ) -> bool:
        """Run ``job``; whether an outcome was handed to the writer. After ``previous``
        (an earlier run of the same job) when given: if that one still finished, its
        outcome, written to this claim, settles the job, and the handler is not run again."""
        try:
            if previous is not None:
                await asyncio.wait([previous])
                if not previous.cancelled() and previous.exception() is None and previous.result():
                    return False
            try:
                outcome = await runner.run_job(
                    job,
                    self.registry,
                    self._executor,
                    default_timeout=self.config.job_timeout,
                    default_retry=self._default_retry,
                )
            except asyncio.CancelledError:
                if job.id in self._abandoned:  # stopped on purpose: no outcome to write
                    return False
                if job.id not in self._cancels:
                    raise
                # Stopped on request: a final outcome, which the database makes cancelled.
                outcome = runner.Outcome(job, 0.0, error=_CANCELLED_WHILE_RUNNING, retryable=False)
            except Exception as error:  # run_job reports handler faults; this is ours
                logger.exception("[Worker] Internal error running job %s", job.id)
                outcome = runner.Outcome(
                    job, 0.0, error=f"internal error: {runner.describe_error(error)}"
                )
            self._metrics.job_duration(job.type, outcome.duration)
            # Finished before it could be stopped: the outcome is still worth writing (it is
            # written only while the job is still ours), and nothing is to be handed back.
            self._abandoned.pop(job.id, None)
            self._writer.put(outcome)
            return True
        finally:
            if self._active.get(job.id) is asyncio.current_task():  # not a later run's
                del self._active[job.id]
            self._wakeup.set()

    def cancel_running(self, job_ids: collections.abc.Iterable[uuid.UUID]) -> None:
        """Stop these jobs, which someone cancelled (``cancel_jobs``), if this worker holds
        them: an async handler gets ``CancelledError`` now and ``cancel_grace`` seconds to
        end, a synchronous one sees ``job.cancel_requested()`` and is waited for. Whatever
        outcome the run then has is written, and the database makes the job cancelled."""
        for job_id in job_ids:
            job = self._held.get(job_id)
            if job is None or job_id in self._cancels:
                continue  # not ours (another worker's, or finished), or stopping already
            self._cancels.add(job_id)
            task = self._active.get(job_id)
            found = self.registry.get(job.type)
            logger.info("[Worker] Cancelling job %s on request", job_id)
            if task is None or found is None or runner.runs_in_thread(found):
                continue  # its outcome is on its way, or the thread polls the flag
            task.cancel()
            asyncio.get_running_loop().call_later(
                self.config.cancel_grace, self._cancel_overdue, job_id, task
            )

    def _cancel_overdue(self, job_id: uuid.UUID, task: asyncio.Task[bool]) -> None:
        """A cancelled async handler that has not ended within ``cancel_grace`` (it caught
        the cancellation): stop waiting for it, and hand its job back, which the database
        makes cancelled."""
        if task.done() or self._active.get(job_id) is not task:
            return
        self._abandon([job_id], f"cancelled, and still running after {self.config.cancel_grace:g}s")
        self._release_later([job_id])
        # Its slot is free again: the run left behind holds nothing of the queue's.
        del self._active[job_id]
        self._wakeup.set()

    def _abandon(
        self, job_ids: collections.abc.Iterable[uuid.UUID], reason: str, outcome: str | None = None
    ) -> None:
        """Stop these running jobs now; their outcome is never written, but counted as
        ``outcome`` when given (a job rescued from under us is lost to this worker, as one
        whose outcome write finds it taken is). A synchronous handler cannot be stopped, so
        a worker running one for them stops itself."""
        threads = 0
        for job_id in job_ids:
            task, job = self._active.get(job_id), self._held.get(job_id)
            if task is None or job is None or job_id in self._abandoned:
                continue
            self._abandoned[job_id] = reason
            logger.warning("[Worker] Stopping job %s: %s", job_id, reason)
            task.cancel()
            if outcome is not None:
                self._metrics.job_finished(job.type, outcome)
            found = self.registry.get(job.type)
            threads += found is not None and runner.runs_in_thread(found)
        if threads:
            self._fail("lease", f"{reason}, and a synchronous handler cannot be stopped")

    # --- writing outcomes -----------------------------------------------------------------

    def _written(
        self, outcome: runner.Outcome, result: str, why: BaseException | None = None
    ) -> None:
        """The writer settled ``outcome``: the job is no longer ours to heartbeat."""
        if result != "lost" and outcome.job.id in self._cancels:
            result = "cancelled"  # what the database made of it
        self._let_go(outcome.job.id)
        if result == "lost":
            logger.warning(
                "[Worker] The outcome of job %s is dropped: %s",
                outcome.job.id,
                "it was deleted while it ran"
                if isinstance(why, types.JobNotFoundError)
                else "its lock went stale and it was handed to another worker",
            )
        elif result == "done":
            self.processed += 1
        elif result in ("retried", "failed"):
            self.failed += 1
        self._metrics.job_finished(outcome.job.type, result)

    def _let_go(self, job_id: uuid.UUID) -> None:
        self._held.pop(job_id, None)
        self._lease_from.pop(job_id, None)
        self._abandoned.pop(job_id, None)
        self._cancels.discard(job_id)

    def _rescued(self, jobs: list[types.RescuedJob]) -> None:
        self.rescued += len(jobs)
        for job in jobs:
            self._metrics.job_rescued(job.type, job.status)

    async def _forget(self) -> None:
        """Say this worker has stopped (``Queue.list_workers`` no longer shows it). Not
        worth waiting for: unsaid, the worker's row is taken for dead once it is stale."""
        try:
            async with asyncio.timeout(min(self.config.heartbeat_interval, _FORGET_WITHIN)):
                await self.queue.forget_worker(self.worker_id)
        except Exception as error:  # the database may be why the worker stops
            logger.info("[Worker] Could not say worker %s stopped: %s", self.worker_id, error)

    # --- heartbeats and leases ----------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await loops.pause(self.config.heartbeat_interval)
            held = self._held.keys() - self._abandoned.keys()
            if held:
                sent = time.monotonic()
                try:
                    # A statement that hangs (a server gone silent) must not hold up the
                    # lease check below.
                    async with asyncio.timeout(self.config.heartbeat_interval):
                        still = await self.queue.heartbeat(self.worker_id, held, now=self.clock())
                except Exception as error:
                    if not loops.retryable(error):
                        raise
                    self._database_error("heartbeat", error)
                else:
                    for job_id in still:
                        if job_id in self._lease_from:
                            self._lease_from[job_id] = sent
                    # Cancel requests this worker missed (no LISTEN, or a notice lost).
                    self.cancel_running([job_id for job_id, asked in still.items() if asked])
                    taken = (held - still.keys()) & self._held.keys()
                    if taken:
                        self._abandon(
                            taken,
                            "its lock was released as stale; it may run elsewhere",
                            outcome="lost",
                        )
            self._check_leases()

    def _check_leases(self) -> None:
        """Stop running jobs whose lease has lapsed: past it, a rescuer may hand them to
        another worker, and a job must not run in two places at once."""
        lapsed_since = time.monotonic() - self.config.lease
        lapsed = [
            job_id
            for job_id, since in self._lease_from.items()
            if since < lapsed_since and job_id in self._active
        ]
        if lapsed:
            self._abandon(
                lapsed,
                f"no heartbeat could be written for {self.config.lease:g}s (half the stale"
                " threshold); it will be rescued and run again",
            )
            self._release_later(lapsed)

    def _release_later(self, job_ids: list[uuid.UUID]) -> None:
        """Hand abandoned jobs back once the database answers again, unless someone rescued
        them first; the attempt is given back, as the job did not fail."""

        async def release() -> None:
            stopped = [job_id for job_id in job_ids if job_id in self._abandoned]
            await self._release(stopped, keep_attempt=False, patience=float("inf"))

        self._spawn("release", release())

    # --- stopping -------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Soft stop, then hard: wait for running jobs up to the grace timeout (or a hard
        stop), cancel the rest and hand them back, then let the writer finish."""
        tasks = set(self._active.values())
        if tasks:
            logger.info("[Worker] Waiting for %d active jobs to complete...", len(tasks))
            hard = asyncio.create_task(self._hard_stop.wait())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.grace_timeout):
                    pending = set(tasks)
                    while pending and not hard.done():
                        await asyncio.wait(pending | {hard}, return_when=asyncio.FIRST_COMPLETED)
                        pending = {task for task in pending if not task.done()}
            hard.cancel()
        unfinished = {job_id: task for job_id, task in self._active.items() if not task.done()}
        failed = self.failure is not None
        if unfinished:
            logger.warning(
                "[Worker] Cancelling %d jobs still running; they go back to pending",
                len(unfinished),
            )
            for job_id, task in unfinished.items():
                self._abandoned.setdefault(job_id, "the worker is stopping")
                task.cancel()
            await asyncio.gather(*unfinished.values(), return_exceptions=True)
            await self._release(list(unfinished), keep_attempt=failed)
        writer_alive = self._writer_task is not None and not self._writer_task.done()
        if writer_alive:
            try:
                async with asyncio.timeout(max(self.config.grace_timeout, 5.0)):
                    await self._writer.join()
            except TimeoutError:
                logger.error(
                    "[Worker] Could not record the outcomes of %d jobs before stopping",
                    len(self._held),
                )
        if self._held:  # outcomes that could not be written: the jobs go back to the queue
            await self._release(list(self._held), keep_attempt=failed)

    async def _release(
        self, job_ids: list[uuid.UUID], *, keep_attempt: bool, patience: float = 10.0
    ) -> None:
        """Hand jobs back to the queue, retrying a database error for ``patience`` seconds;
        what cannot be handed back is rescued as stale later."""
        backoff = loops.Backoff(2.0)
        deadline = time.monotonic() + patience
        error_text = f"worker {self.worker_id} stopped: {self.failure}" if keep_attempt else None
        while True:
            try:
                released = await self.queue.release_jobs(
                    self.worker_id,
                    job_ids,
                    keep_attempt=keep_attempt,
                    error=error_text,
                    now=self.clock(),
                )
            except Exception as error:
                if not loops.retryable(error) or time.monotonic() > deadline:
                    logger.error(
                        "[Worker] Could not hand back %d jobs (%s); they will be rescued as stale",
                        len(job_ids),
                        db.describe_database_error(error),
                    )
                    break
                self._database_error("release", error)
                await loops.pause(backoff.next())
                continue
            for job in released:
                self._metrics.job_finished(job.type, "released")
            break
        for job_id in job_ids:  # no longer heartbeated: if still ours, rescue frees it
            self._let_go(job_id)

    def handler_threads_busy(self) -> bool:
        """Whether a synchronous handler is still running in a thread. Threads cannot be
        cancelled: a process that must exit now has to leave without joining them."""
        return self._executor is not None and self._executor.busy > 0


# --- running a worker: the seed's API and the command's ---------------------------------------


async def open_queue_when_available(worker_queue: queue_module.Queue, worker: Worker) -> bool:
    """Open the queue's pool, retrying while the database is unavailable; ``False`` when
    the worker was stopped first. A configuration that cannot work (wrong password, unknown
    role, database or host) raises ``WorkerFailedError`` at once: waiting will not fix it,
    and a pod that exits shows the reason where a silently retrying one would not."""
    backoff = loops.Backoff(worker.config.max_backoff)
    while not worker._stopping.is_set():
        try:
            await worker_queue.open()
            return True
        except Exception as error:
            kind = db.classify_error(error)
            if kind is db.ErrorKind.PERMANENT:
                raise WorkerFailedError(
                    f"cannot connect to the database: {db.describe_database_error(error)}"
                ) from error
            if kind is None:
                raise
            worker._database_error("connect", error)
            await worker._sleep(backoff.next())
    return False


def make_worker(
    config: WorkerConfig,
    *,
    database_url: str | None = None,
    registry: runner.Registry | None = None,
    clock: Clock | None = None,
) -> Worker:
    """A worker with a queue (pool not yet opened) of its own."""
    worker_queue = queue_module.Queue(
        database_url,
        queue=config.queue,
        pool_max_size=config.pool_max_size,
        pool_timeout=config.pool_timeout,
        # Without LISTEN, or listening elsewhere, the worker's pool can go through PgBouncer
        # in transaction mode, which cannot keep a prepared statement from one transaction
        # to the next.
        prepared_statements=None if config.listen and config.listen_url is None else False,
    )
    return Worker(worker_queue, config, registry=registry, clock=clock)


async def serve(worker: Worker) -> None:
    """Open the worker's queue (waiting for the database), run the worker, close."""
    try:
        if await open_queue_when_available(worker.queue, worker):
            await worker.run()
    finally:
        await worker.queue.close()
        worker._stopped.set()


_current: dict[str, typing.Any] = {}


def _config(
    poll_interval: float | None,
    concurrency: int | None,
    worker_id: str | None,
    options: dict[str, typing.Any],
) -> WorkerConfig:
    """The seed's positional settings plus any other ``WorkerConfig`` field; what is not
    given comes from the environment, as for ``jobqueue worker``."""
    seed: dict[str, typing.Any] = {
        "poll_interval": poll_interval,
        "concurrency": concurrency,
        "worker_id": worker_id,
    }
    given = {name: value for name, value in seed.items() if value is not None}
    return WorkerConfig(**given, **options)


def start_worker(
    poll_interval: float | None = None,
    concurrency: int | None = None,
    worker_id: str | None = None,
    *,
    database_url: str | None = None,
    registry: runner.Registry | None = None,
    **options: typing.Any,
) -> Worker:
    """Start the process's worker as a task on the running event loop (the seed's
    ``startWorker``); ``options`` are further ``WorkerConfig`` fields."""
    running = _current.get("worker")
    if running is not None and not running._stopped.is_set():
        raise RuntimeError(f"worker {running.worker_id} is already running; stop it first")
    config = _config(poll_interval, concurrency, worker_id, options)
    worker = make_worker(config, database_url=database_url, registry=registry)
    _current["worker"] = worker
    _current["task"] = asyncio.get_running_loop().create_task(serve(worker))
    return worker


async def stop_worker(*, hard: bool = False) -> None:
    """Stop the process's worker and wait until its running jobs are finished (the seed's
    ``stopWorker``); ``hard`` cancels them and hands them back instead."""
    worker: Worker | None = _current.get("worker")
    if worker is None:
        return
    worker.stop(hard=hard)
    task: asyncio.Task[None] = _current["task"]
    await task


def get_worker_state() -> dict[str, typing.Any]:
    """``{is_running, active_jobs, worker_id, processed, failed, started_at, ...}``."""
    worker: Worker | None = _current.get("worker")
    if worker is None:
        return {
            "is_running": False,
            "active_jobs": 0,
            "worker_id": None,
            "processed": 0,
            "failed": 0,
            "started_at": None,
        }
    return worker.state()


def init_job_system(
    poll_interval: float | None = None,
    concurrency: int | None = None,
    worker_id: str | None = None,
    *,
    handle_signals: bool = True,
    **options: typing.Any,
) -> Worker:
    """What a service calls at start-up (the seed's ``initJobSystem``): register the
    handlers of every installed plugin and of ``$JOBQUEUE_IMPORTS`` (as ``jobqueue worker``
    does; ``JOBQUEUE_PLUGINS=false`` loads no plugin), start the worker, and stop it
    gracefully on SIGTERM/SIGINT. Settings not given come from the environment."""
    plugins.register_configured_handlers()
    worker = start_worker(poll_interval, concurrency, worker_id, **options)
    if handle_signals:
        worker.install_signal_handlers()
    return worker
