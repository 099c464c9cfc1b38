"""The worker's background loops: the outcome writer, the LISTEN connection, the stale-job
rescue, the statistics' compaction, the periodic schedules and the worker's announcements.
The supervisor (``jobqueue.worker``) starts each one under its supervision and owns the
running jobs; a loop knows only the queue and what it is told to call.

Every loop runs until cancelled. A database error that passes by itself
(``db.classify_error``) is reported through ``report`` and ridden out with backoff; any
other error is raised, and the supervisor then fails the whole worker, so nothing stops
silently.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import datetime
import logging
import random
import uuid

import psycopg

from jobqueue import db, runner, schedules, session, sql, types
from jobqueue import queue as queue_module

logger = logging.getLogger("jobqueue.worker")

READY_CHANNEL = "jobqueue_ready"
CANCEL_CHANNEL = "jobqueue_cancel"  # job_cancel sends the ids of running jobs to stop
# Outcomes one write takes at most: one statement completes them all.
_BATCH: int = 1000
# The schedules loop looks again at least this often (another process may have declared,
# changed or deleted a schedule), and, while another holds a due schedule, this soon.
SCHEDULES_MAX_WAIT = 30.0
SCHEDULES_MIN_WAIT = 0.2
# How often the LISTEN connection proves it is alive, and how long the proof may take: a
# silently dead one is replaced within about twice this, and the 5 s psycopg then spends
# trying to cancel the stuck proof on the server: 10 s.
LISTEN_CHECK_INTERVAL = 2.5
# The row of a worker that died without saying so (``announce_worker``) is deleted by the
# others once it is this old.
WORKERS_FORGOTTEN_AFTER = 86_400.0

Clock = collections.abc.Callable[[], datetime.datetime | None]
"""What a worker's statements take as the time: ``None`` for the database's ``now()``."""
ErrorReport = collections.abc.Callable[[str, BaseException], None]
"""Told of a database error that will be retried: the operation's name and the error."""


def stop_if_cancelled() -> None:
    """Raise CancelledError when this task was asked to stop: a cancellation that arrives
    while psycopg waits on the server can be taken by it (it cancels the statement, which
    may then end either way), and a loop would otherwise go on as if never told."""
    with contextlib.suppress(RuntimeError):  # no running loop: no task to stop
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


async def pause(seconds: float) -> None:
    """``asyncio.sleep`` for a loop between database calls, unless it was cancelled meanwhile."""
    stop_if_cancelled()
    await asyncio.sleep(seconds)


def retryable(error: BaseException) -> bool:
    """Whether a failed database call is worth repeating: the database is unavailable for
    now, or misconfigured in a way someone may fix while we wait. A task asked to stop while
    it waited on the database gets its CancelledError back instead: psycopg may report the
    statement it cancelled then as QueryCanceled, an error a loop would otherwise retry."""
    stop_if_cancelled()
    return db.classify_error(error) is not None


class Backoff:
    """Exponential delays with jitter for retrying a database that went away."""

    def __init__(self, maximum: float) -> None:
        self.maximum = maximum
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return min(self.maximum, 0.1 * 2.0 ** min(self.failures, 30)) * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


Written = collections.abc.Callable[[runner.Outcome, str, BaseException | None], None]
"""Told of each outcome once it is settled: ``done``, ``retried``, ``failed`` or ``lost``
(the job was deleted or handed to another worker meanwhile), with the reason if lost."""


class OutcomeWriter:
    """Writes finished jobs' outcomes: every plain completion waiting in one statement, so
    under load completions batch themselves and at low load nothing waits. An outcome the
    database refuses (a follow-up it cannot store, a row deleted meanwhile) is recorded as
    the job's failure or dropped, never retried forever."""

    def __init__(
        self,
        queue: queue_module.Queue,
        worker_id: str,
        clock: Clock,
        *,
        max_backoff: float,
        report: ErrorReport,
        written: Written,
        wakeup: asyncio.Event,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.clock = clock
        # Retried every second at most: an outcome not written in time (before a stop, or
        # before the stale threshold) means running the job again.
        self._backoff = Backoff(min(max_backoff, 1.0))
        self._report = report
        self._written = written
        self._wakeup = wakeup
        # A list and two events rather than an asyncio.Queue: outcomes are taken a batch at
        # a time, and the queue's bookkeeping for each one showed in the worker's profile.
        self._outcomes: list[runner.Outcome] = []
        self._waiting = asyncio.Event()
        self._unwritten = 0  # put but not yet written
        self._all_written = asyncio.Event()
        self._all_written.set()

    def put(self, outcome: runner.Outcome) -> None:
        self._outcomes.append(outcome)
        self._unwritten += 1
        self._all_written.clear()
        self._waiting.set()

    async def join(self) -> None:
        """Until every outcome put so far is written."""
        await self._all_written.wait()

    async def run(self) -> None:
        while True:
            await self._waiting.wait()
            batch = self._outcomes[:_BATCH]
            del self._outcomes[:_BATCH]
            if not self._outcomes:
                self._waiting.clear()
            unwritten = batch
            while unwritten:
                try:
                    unwritten = await self._write(unwritten)
                    self._backoff.reset()
                except Exception as error:
                    if not retryable(error):
                        raise
                    self._report("complete", error)
                    await pause(self._backoff.next())
            self._unwritten -= len(batch)
            if not self._unwritten:
                self._all_written.set()
            self._wakeup.set()  # written retries may be ready; burst mode may be over

    async def _write(self, batch: list[runner.Outcome]) -> list[runner.Outcome]:
        """Write outcomes; returns those not yet written when a database error interrupts
        (and raises it when nothing could be written)."""
        plain = [o for o in batch if o.succeeded and not o.enqueue]
        rest = [o for o in batch if not (o.succeeded and not o.enqueue)]
        if plain:
            try:
                completed = await self.queue.complete_jobs(
                    self.worker_id, [(o.job.id, o.result_json) for o in plain], now=self.clock()
                )
            except Exception as error:
                if retryable(error):
                    raise
                rest = plain + rest  # one of them is refused: find it, write the others
            else:
                every = len(completed) == len(plain)  # the usual case: no id to look up
                for outcome in plain:
                    done = every or outcome.job.id in completed
                    self._written(outcome, "done" if done else "lost", None)
        for index, outcome in enumerate(rest):
            try:
                await self._write_one(outcome)
            except Exception as error:
                if not retryable(error) or index == 0:
                    raise
                return rest[index:]
        return []

    async def _write_one(self, outcome: runner.Outcome) -> None:
        try:
            await self._record(outcome)
        except (types.JobStateError, types.JobNotFoundError) as error:
            self._written(outcome, "lost", error)
        except Exception as error:
            if retryable(error):
                raise
            # The database refused this outcome (not the connection): record that as the
            # job's failure, so the job ends instead of being retried forever.
            logger.error(
                "[Worker] Could not record the outcome of job %s: %s",
                outcome.job.id,
                runner.describe_error(error),
            )
            refused = dataclasses.replace(
                outcome,
                result_json=None,
                enqueue=(),
                error=f"could not record the job's outcome: {runner.describe_error(error)}",
                retryable=False,
                retry_delay=0.0,
                snooze=None,
            )
            try:
                await self._record(refused)
            except (types.JobStateError, types.JobNotFoundError) as lost:
                self._written(outcome, "lost", lost)

    async def _record(self, outcome: runner.Outcome) -> None:
        job = outcome.job
        if outcome.snooze is not None:
            await self.queue.snooze_job(
                job.id, outcome.snooze, worker_id=self.worker_id, now=self.clock()
            )
            self._written(outcome, "snoozed", None)
            return
        if outcome.succeeded:
            await session.complete_job_json(
                self.queue,
                job.id,
                outcome.result_json,
                enqueue=outcome.enqueue,
                worker_id=self.worker_id,
                now=self.clock(),
            )
            self._written(outcome, "done", None)
            return
        written = await self.queue.fail_job(
            job.id,
            outcome.error or "failed",
            retry_delay=outcome.retry_delay,
            final=not outcome.retryable,
            worker_id=self.worker_id,
            now=self.clock(),
        )
        self._written(outcome, "retried" if written.status == "pending" else "failed", None)


class Listener:
    """Keeps a LISTEN connection; every notification for ``queue_name`` sets ``wakeup``,
    and with ``cancel`` given, every cancel request is handed to it (with the job's id; the
    worker ignores ids it does not hold). On a lost connection: report, back off,
    re-listen, and set ``wakeup`` once in case a notification was missed meanwhile (a missed
    cancel request reaches the worker with its next heartbeat). ``url``: where to listen,
    when not the queue's own database URL (which may lead through PgBouncer)."""

    def __init__(
        self,
        queue: queue_module.Queue,
        worker_id: str,
        queue_name: str,
        *,
        max_backoff: float,
        report: ErrorReport,
        wakeup: asyncio.Event,
        cancel: collections.abc.Callable[[uuid.UUID], None] | None = None,
        url: str | None = None,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.queue_name = queue_name
        self.listening = False
        self._cancel = cancel
        # The server's own URL when the queue's pool goes through a pooler that cannot LISTEN.
        self._url = url or queue.conninfo
        self._backoff = Backoff(max_backoff)
        self._report = report
        self._wakeup = wakeup

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._listen()
                except Exception as error:
                    if not retryable(error):
                        raise
                    self.listening = False
                    self._report("listen", error)
                    await pause(self._backoff.next())
        finally:
            self.listening = False

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            application_name=f"jobqueue-listen {self.worker_id}"[:63],
            **db.connect_options(self._url),
        )
        async with conn:
            await conn.execute(sql.query("job_ready_listen"))
            if self._cancel is not None:
                await conn.execute(sql.query("job_cancel_listen"))
            if not self.listening:
                logger.info("[Worker] Listening for new jobs on %s", READY_CHANNEL)
            self.listening = True
            self._backoff.reset()
            self._wakeup.set()
            while True:
                async for notice in conn.notifies(timeout=LISTEN_CHECK_INTERVAL):
                    if notice.channel == CANCEL_CHANNEL:
                        if self._cancel is not None:
                            with contextlib.suppress(ValueError):  # not an id: not ours
                                self._cancel(uuid.UUID(notice.payload))
                    elif notice.payload == self.queue_name:
                        self._wakeup.set()
                # Prove the connection still lives, with a deadline: on a half-open one (the
                # server, or something between, gone silent without closing it) the ping
                # would hang, and notices be lost, until TCP gave up many minutes later.
                async with asyncio.timeout(LISTEN_CHECK_INTERVAL):
                    await conn.execute(sql.query("connection_ping"))


async def rescue_stale_jobs(
    queue: queue_module.Queue,
    queue_name: str,
    *,
    threshold: float,
    interval: float,
    clock: Clock,
    report: ErrorReport,
    rescued: collections.abc.Callable[[list[types.RescuedJob]], None],
) -> None:
    """Now and then, rescue the queue's stale jobs (a killed worker's), one process at a
    time per queue; ``rescued`` is told what each round rescued."""
    while True:
        await pause(interval * random.uniform(0.8, 1.2))
        try:
            found = await queue.rescue_stale_jobs(
                threshold, queue=queue_name, only_one_rescuer=True, now=clock()
            )
        except Exception as error:
            if not retryable(error):
                raise
            report("rescue", error)
            continue
        rescued(found)


async def compact_counts(
    queue: queue_module.Queue, *, interval: float, report: ErrorReport
) -> None:
    """Fold the statistics' deltas now and then, so they stay a few rows however many jobs
    pass and however rarely anyone reads the stats (one process at a time does)."""
    while True:
        await pause(interval * random.uniform(0.8, 1.2))
        try:
            await queue.compact_counts()
        except Exception as error:
            if not retryable(error):
                raise
            report("compact_counts", error)


async def announce_worker(
    queue: queue_module.Queue,
    worker_id: str,
    *,
    queue_name: str,
    concurrency: int,
    started_at: datetime.datetime,
    interval: float,
    clock: Clock,
    report: ErrorReport,
) -> None:
    """Say the worker is up, now and every ``interval`` seconds, for whoever lists the
    workers (``Queue.list_workers``, the web UI)."""
    while True:
        try:
            await queue.announce_worker(
                worker_id,
                queue=queue_name,
                concurrency=concurrency,
                started_at=started_at,
                forget_after=WORKERS_FORGOTTEN_AFTER,
                now=clock(),
            )
        except Exception as error:
            if not retryable(error):
                raise
            report("announce", error)
        await pause(interval)


async def run_schedules(
    queue: queue_module.Queue,
    given: list[schedules.Schedule],
    *,
    clock: Clock,
    max_backoff: float,
    report: ErrorReport,
) -> None:
    """Declare the schedules, then enqueue their ticks as they fall due: a pass at each
    tick (``queue.run_schedules``), declared again if someone deleted one. Any number of
    workers may run the same schedules: each tick is enqueued once."""
    backoff = Backoff(max_backoff)
    declared = False
    while True:
        try:
            if not declared:
                await queue.declare_schedules(given, now=clock())
            run = await queue.run_schedules(given, now=clock())
        except Exception as error:
            if not retryable(error):
                raise
            report("schedules", error)
            await pause(backoff.next())
            continue
        backoff.reset()
        declared = run.declared
        until_due = SCHEDULES_MAX_WAIT
        if run.next_run_at is not None:
            until_due = (run.next_run_at - run.now).total_seconds()
        await pause(min(SCHEDULES_MAX_WAIT, max(SCHEDULES_MIN_WAIT, until_due)))
