"""One ``JobQueue``'s database side: what the operator reads and keeps in shape, through the
core's public maintenance API only.

A ``QueueMonitor`` holds a small pool to the queue's database. ``open`` applies the
migrations first (under the core's advisory lock, so it is safe beside workers and other
operators), so the schema exists before the first worker starts. With ``on_ready`` it also
keeps a LISTEN connection: every NOTIFY that jobs of its queue are ready calls it, so a
queue at zero replicas wakes in about a second instead of at the next poll. It also reads,
now and then, whether vacuum keeps the queue's tables in shape (``vacuum_health``).

Errors are the core's: a database that cannot be reached raises what
``jobqueue``'s classification calls transient; a wrong password or an unknown database,
permanent. The operator reports either in the ``DatabaseReachable`` condition.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import logging
import time

import jobqueue

logger = logging.getLogger("jobqueue_operator.monitor")

# Connections per monitor: depth, rescue, prune and vacuum health run one after another;
# LISTEN has its own.
_POOL_SIZE = 2
# Batches of the retention purge per reconcile, so one pass stays short; the next goes on.
PRUNE_BATCHES = 10


@dataclasses.dataclass(frozen=True)
class Depth:
    """A queue's backlog over all its job types, and the rows per type."""

    ready: int
    delayed: int
    due_soon: int
    running: int
    failed: int
    done: int
    oldest_ready_age: float | None
    by_type: tuple[jobqueue.QueueDepth, ...]
    cancelled: int = 0
    paused: bool = False
    # Of the ready jobs, those the queue's concurrency limits hold back now: more workers
    # would not run them.
    held: int = 0

    @property
    def pending(self) -> int:
        return self.ready + self.delayed

    @property
    def claimable(self) -> int:
        """The ready jobs a worker could start now."""
        return self.ready - self.held

    @classmethod
    def of(cls, rows: collections.abc.Sequence[jobqueue.QueueDepth]) -> Depth:
        ages = [row.oldest_ready_age for row in rows if row.oldest_ready_age is not None]
        return cls(
            ready=sum(row.ready for row in rows),
            delayed=sum(row.delayed for row in rows),
            due_soon=sum(row.due_soon for row in rows),
            running=sum(row.running for row in rows),
            failed=sum(row.failed for row in rows),
            done=sum(row.done for row in rows),
            oldest_ready_age=max(ages) if ages else None,
            by_type=tuple(rows),
            cancelled=sum(row.cancelled for row in rows),
        )


class QueueMonitor:
    """The database side of one ``JobQueue`` (see the module docstring)."""

    def __init__(
        self,
        database_url: str,
        queue_name: str,
        *,
        on_ready: collections.abc.Callable[[], None] | None = None,
        name: str = "jobqueue-operator",
    ) -> None:
        self.database_url = database_url
        self.queue_name = queue_name
        self._queue = jobqueue.Queue(database_url, queue=queue_name, pool_max_size=_POOL_SIZE)
        self._on_ready = on_ready
        self._name = name
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: jobqueue.ReadyListener | None = None
        self._opened = False
        self._declared: list[jobqueue.Schedule] | None = None  # as last written
        self._vacuum_read_at: float | None = None  # time.monotonic() of the last reading
        self._warned_unseen_sessions = False

    async def open(self) -> None:
        """Migrate, open the pool, and start listening (with ``on_ready``). Raises what
        connecting or migrating raised; ``open`` may be called again after a failure."""
        applied = await jobqueue.migrate(self.database_url)
        if applied:
            logger.info(
                "Applied migrations %s for queue %s",
                ", ".join(migration.label for migration in applied),
                self.queue_name,
            )
        if not self._opened:
            await self._queue.open()
            self._opened = True
        if self._on_ready is not None and not self._tasks:
            wakeup = asyncio.Event()
            self._listener = listener = jobqueue.ReadyListener(
                self._queue,
                self._name,
                self.queue_name,
                max_backoff=30.0,
                report=self._listen_error,
                wakeup=wakeup,
            )
            self._tasks = [
                asyncio.create_task(self._keep(listener.run()), name="jobqueue-operator-listen"),
                asyncio.create_task(self._relay(wakeup), name="jobqueue-operator-wakeup"),
            ]

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up."""
        return self._listener is not None and self._listener.listening

    async def _keep(self, work: collections.abc.Coroutine[object, object, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not a database outage (those are retried inside): polling still works.
            logger.exception("LISTEN for queue %s stopped; polling only", self.queue_name)

    async def _relay(self, wakeup: asyncio.Event) -> None:
        assert self._on_ready is not None
        while True:
            await wakeup.wait()
            wakeup.clear()
            self._on_ready()

    def _listen_error(self, operation: str, error: BaseException) -> None:
        logger.warning("LISTEN for queue %s lost, retrying: %s", self.queue_name, error)

    async def observe(self, *, due_within: float) -> Depth:
        rows = await jobqueue.queue_depth(self._queue, name=self.queue_name, due_within=due_within)
        paused = await self._queue.paused_queues(self.queue_name)
        held = await self._queue.held_by_limits(self.queue_name)
        return dataclasses.replace(Depth.of(rows), paused=bool(paused), held=held)

    async def run_schedules(
        self, schedules: list[jobqueue.Schedule], *, ahead: float
    ) -> jobqueue.ScheduleRun | None:
        """Enqueue the ticks of the spec's schedules due within ``ahead`` seconds (the next
        poll: a tick's job waits for its time, and counts as due soon for the scaling), once
        per tick whoever else runs them; declared first whenever the spec changed them or
        someone deleted one. ``None`` when the spec has none."""
        if not schedules:
            return None
        if schedules != self._declared:
            await self._queue.declare_schedules(schedules)
            self._declared = schedules
        run = await self._queue.run_schedules(schedules, ahead=ahead)
        if not run.declared:
            self._declared = None  # deleted by hand: declared again at the next pass
        return run

    async def schedule_states(
        self, schedules: list[jobqueue.Schedule]
    ) -> list[jobqueue.ScheduleState]:
        """How the database holds ``schedules``: next and last runs."""
        names = {schedule.name for schedule in schedules}
        return [
            state
            for state in await self._queue.list_schedules(self.queue_name)
            if state.name in names
        ]

    async def rescue(self, stale_after: float) -> list[jobqueue.RescuedJob]:
        """Running jobs whose heartbeat is ``stale_after`` seconds old (a dead worker's)
        back to the queue; one rescuer at a time per queue, workers included."""
        return await self._queue.rescue_stale_jobs(
            stale_after, queue=self.queue_name, only_one_rescuer=True
        )

    async def prune(self, *, done_older_than: float, failed_older_than: float) -> int:
        """The retention purge, each status with its own age, in bounded batches."""
        deleted = 0
        # Cancelled jobs are kept as long as failed ones: both are kept to be looked into.
        ages = (
            ("done", done_older_than),
            ("failed", failed_older_than),
            ("cancelled", failed_older_than),
        )
        for status, older_than in ages:
            deleted += await jobqueue.prune_finished_jobs(
                self._queue,
                older_than,
                name=self.queue_name,
                statuses=[status],
                max_batches=PRUNE_BATCHES,
            )
        return deleted

    async def running_by_worker(self) -> dict[str, int]:
        """Running jobs per worker id (the pod name, as the operator's Deployment sets it)."""
        return await jobqueue.running_by_worker(self._queue, name=self.queue_name)

    async def vacuum_health(self, *, every: float) -> jobqueue.VacuumHealth | None:
        """The database's vacuum health, read at most once every ``every`` seconds (the
        statistics behind it change slowly, and a reconcile may come every quarter second);
        ``None`` when the last reading is more recent. The first call reads."""
        now = time.monotonic()
        if self._vacuum_read_at is not None and now - self._vacuum_read_at < every:
            return None
        health = await self._queue.vacuum_health()
        self._vacuum_read_at = now
        if not health.sees_all_sessions and not self._warned_unseen_sessions:
            self._warned_unseen_sessions = True
            logger.warning(
                "The database role of queue %s cannot see when other roles' transactions"
                " began: the oldest transaction age covers its own sessions and prepared"
                " transactions only (grant it pg_monitor or pg_read_all_stats)",
                self.queue_name,
            )
        return health

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._listener = None
        if self._opened:
            await self._queue.close()
            self._opened = False
