"""Periodic schedules: a job enqueued at every tick of a cron expression or an interval,
once per tick however many processes run the schedule (issue 21).

A ``Schedule`` is declared in code (``jobqueue.register_schedule``; the workers of its
queue run it) or in a ``JobQueue``'s ``spec.schedules`` (the operator runs it). Whoever
runs it calls ``run_schedules`` now and then: in one transaction it locks the schedule's
row of ``job_schedules`` (migration 0007), enqueues the ticks due, and moves the row's
``next_run_at`` on; another process finds the row locked or already moved, and enqueues
nothing. Each tick's job also holds the unique key ``schedule:<name>@<tick>`` for good, so a
tick is enqueued once even if the row is deleted or rewritten meanwhile.

Missed ticks (nobody ran the schedule for a while): the newest tick due is enqueued, late;
of the ticks before it, ``catch_up`` at most are enqueued too (default 0: skipped). A tick's
job has the tick as its ``run_at``.

Each function is a method of ``jobqueue.Queue`` (``self``: the queue whose pool it uses).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import logging
import typing

import psycopg

from jobqueue import checks, db, producer, sql, statements, timetables, types

logger = logging.getLogger("jobqueue.queue")

MAX_NAME_LENGTH: typing.Final = 150  # the key "schedule:<name>@<tick>" stays within 200
MAX_CATCH_UP: typing.Final = 1000
UNIQUE_KEY_PREFIX: typing.Final = "schedule:"
_BEFORE: typing.Final = datetime.timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A job of ``type`` with ``payload`` enqueued at every tick of ``cron`` (five fields,
    read on the wall clock of ``timezone``, an IANA name) or of ``every`` seconds (counted
    from the Unix epoch), into ``queue`` with ``priority`` and ``max_attempts``.
    ``catch_up``: how many ticks missed before the newest due one are enqueued late
    (0: skipped). ``name`` identifies the schedule in the database: unique per database."""

    name: str
    type: str
    payload: typing.Any = None
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    queue: str = checks.DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int | None = None
    catch_up: int = 0
    timetable: timetables.Timetable = dataclasses.field(init=False, repr=False, compare=False)
    payload_text: str | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = checks.check_name(self.name, "schedule name")
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"schedule name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
            )
        checks.check_name(self.type, "job type")
        checks.check_name(self.queue, "queue")
        checks.check_int(self.priority, "priority", minimum=-checks.INT32_MAX)
        if self.max_attempts is not None:
            checks.check_int(self.max_attempts, "max_attempts", minimum=1)
        checks.check_int(self.catch_up, "catch_up", minimum=0, maximum=MAX_CATCH_UP)
        zone = timetables.time_zone(self.timezone)
        timetable: timetables.Timetable
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {name!r} needs either cron or every, not both or neither")
        if self.cron is not None:
            timetable = timetables.CronTimetable(timetables.Cron.parse(self.cron), zone)
        else:
            every = checks.check_seconds(self.every, "every", allow_zero=False)
            if every < 1:
                raise ValueError(
                    f"every is {every:g} seconds; a schedule ticks at most each second"
                )
            timetable = timetables.IntervalTimetable(every)
        object.__setattr__(self, "timetable", timetable)
        object.__setattr__(self, "payload_text", checks.to_json_text(self.payload, "payload"))

    @property
    def timing(self) -> str:
        return timing(self.cron, self.every, self.timezone)

    def next_after(self, instant: datetime.datetime) -> datetime.datetime:
        """The schedule's first tick strictly after ``instant``."""
        return self.timetable.next_after(instant)

    def due_ticks(
        self,
        start: datetime.datetime,
        now: datetime.datetime,
        horizon: datetime.datetime | None = None,
    ) -> tuple[list[datetime.datetime], bool]:
        """The ticks from ``start`` on to enqueue, oldest first: every one after ``now`` up
        to ``horizon`` (ahead of time), the newest at or before ``now``, and up to
        ``catch_up`` missed ones before that; and whether older missed ones were left out."""
        ticks: list[datetime.datetime] = []
        tick = self.timetable.latest_at(horizon or now)
        while tick is not None and tick > now and tick >= start:
            ticks.append(tick)
            tick = self.timetable.latest_at(tick - _BEFORE)
        for _ in range(self.catch_up + 1):  # the newest due now, then the missed ones
            if tick is None or tick < start:
                break
            ticks.append(tick)
            tick = self.timetable.latest_at(tick - _BEFORE)
        return ticks[::-1], tick is not None and tick >= start


def timing(cron_expression: str | None, every: float | None, timezone: str) -> str:
    """A schedule's timing as people write it: the cron expression (and its zone, unless
    UTC), or the interval."""
    if cron_expression is not None:
        return cron_expression if timezone == "UTC" else f"{cron_expression} ({timezone})"
    return f"every {every:g}s"


def tick_key(name: str, tick: datetime.datetime) -> str:
    """The unique key of schedule ``name``'s job for ``tick``."""
    stamp = tick.astimezone(datetime.UTC).replace(tzinfo=None).isoformat()
    return f"{UNIQUE_KEY_PREFIX}{name}@{stamp}Z"


@dataclasses.dataclass(frozen=True)
class ScheduleRun:
    """What one ``run_schedules`` pass did: the jobs it enqueued; when the earliest of the
    schedules is next due (``now`` when one has not been looked at yet); the clock it
    went by; and whether every schedule given was declared (a row exists for it)."""

    enqueued: list[types.Job]
    next_run_at: datetime.datetime | None
    now: datetime.datetime
    declared: bool


@dataclasses.dataclass(frozen=True)
class ScheduleState:
    """A schedule as the database holds it: its definition, when it is next due and the
    newest tick enqueued, and when it was last declared."""

    name: str
    type: str
    queue: str
    cron: str | None
    every: float | None
    timezone: str
    payload: typing.Any
    priority: int
    max_attempts: int | None
    catch_up: int
    next_run_at: datetime.datetime | None
    last_run_at: datetime.datetime | None
    updated_at: datetime.datetime

    @property
    def timing(self) -> str:
        return timing(self.cron, self.every, self.timezone)

    def to_json(self) -> dict[str, types.JsonValue]:
        return types.fields_as_json(self, dataclasses.fields(self))


def _checked(schedules: collections.abc.Iterable[Schedule]) -> list[Schedule]:
    given = list(schedules)
    names: set[str] = set()
    for schedule in given:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"expected a Schedule, not {type(schedule).__name__}")
        if schedule.name in names:
            raise ValueError(f"schedule {schedule.name!r} is given twice")
        names.add(schedule.name)
    return given


async def declare_schedules(
    self: producer.Producer,
    schedules: collections.abc.Iterable[Schedule],
    *,
    now: datetime.datetime | None = None,
) -> None:
    """Write the schedules' definitions to the database: new ones are added, changed ones
    updated (a changed timing starts again from its next tick), unchanged ones left alone.
    ``run_schedules`` runs only declared schedules."""
    given = _checked(schedules)
    if not given:
        return
    params = {
        "names": [schedule.name for schedule in given],
        "types": [schedule.type for schedule in given],
        "queues": [schedule.queue for schedule in given],
        "crons": [schedule.cron for schedule in given],
        "every_seconds": [schedule.every for schedule in given],
        "time_zones": [schedule.timezone for schedule in given],
        "payloads": [schedule.payload_text for schedule in given],
        "priorities": [schedule.priority for schedule in given],
        "max_attempts": [schedule.max_attempts for schedule in given],
        "catch_ups": [schedule.catch_up for schedule in given],
        "now": checks.check_time(now, "now"),
    }
    async with db.Lease(self.pool) as conn:
        await conn.execute(sql.query("schedule_declare"), params)


async def run_schedules(
    self: producer.Producer,
    schedules: collections.abc.Iterable[Schedule],
    *,
    now: datetime.datetime | None = None,
    ahead: float = 0.0,
) -> ScheduleRun:
    """Enqueue the ticks of ``schedules`` due by now (``now``: the database's clock unless
    given), or within ``ahead`` seconds of it (their jobs wait for their tick), and move
    each schedule on to its next tick; a schedule another process is running at this
    moment is left to it. Safe to call from any number of processes at once: each tick is
    enqueued once. Returns what was done and when to call again."""
    given = _checked(schedules)
    ahead = checks.check_seconds(ahead, "ahead")
    checked_now = checks.check_time(now, "now")
    by_name = {schedule.name: schedule for schedule in given}
    names = list(by_name)
    enqueued: list[types.Job] = []
    async with db.Lease(self.pool) as conn:
        async with conn.transaction():
            cursor = await conn.execute(
                sql.query("schedule_due_lock"),
                {"names": names, "now": checked_now, "ahead": ahead},
            )
            due = await cursor.fetchall()
            if due:
                enqueued = await _enqueue_ticks(
                    self.pool, conn, [(by_name[row[0]], *row[1:]) for row in due], ahead
                )
        cursor = await conn.execute(
            sql.query("schedule_next_run"), {"names": names, "now": checked_now}
        )
        row = await cursor.fetchone()
    assert row is not None  # an aggregate: always one row
    earliest, count, not_looked_at, clock = row
    return ScheduleRun(
        enqueued=enqueued,
        next_run_at=clock if not_looked_at else earliest,
        now=clock,
        declared=count == len(names),
    )


async def _enqueue_ticks(
    pool: statements.Pool,
    conn: psycopg.AsyncConnection[typing.Any],
    due: list[tuple[Schedule, datetime.datetime | None, datetime.datetime]],
    ahead: float,
) -> list[types.Job]:
    """Inside ``run_schedules``' transaction: the jobs of the due ticks of the locked
    schedules ``due`` (each with its ``next_run_at`` and the clock), and the rows moved on;
    returns the jobs added (a tick enqueued before is not among them)."""
    columns = ("ids", "types", "payloads", "ticks", "max_attempts", "queues", "priorities")
    jobs: dict[str, list[typing.Any]] = {name: [] for name in (*columns, "unique_keys")}
    moved: dict[str, list[typing.Any]] = {"names": [], "next_run_ats": [], "last_run_ats": []}
    for schedule, next_run_at, clock in due:
        horizon = clock + datetime.timedelta(seconds=ahead)
        start = next_run_at or schedule.next_after(clock)
        ticks: list[datetime.datetime] = []
        skipped = False
        if start <= horizon:
            ticks, skipped = schedule.due_ticks(start, clock, horizon)
        if skipped:
            logger.warning(
                "[Queue] Schedule %s missed ticks from %s to %s: skipped (catch_up=%d)",
                schedule.name,
                start.isoformat(),
                ticks[0].isoformat(),
                schedule.catch_up,
            )
        for tick in ticks:
            jobs["ids"].append(producer.new_job_id())
            jobs["types"].append(schedule.type)
            jobs["payloads"].append(schedule.payload_text)
            jobs["ticks"].append(tick)
            jobs["max_attempts"].append(schedule.max_attempts)
            jobs["queues"].append(schedule.queue)
            jobs["priorities"].append(schedule.priority)
            jobs["unique_keys"].append(tick_key(schedule.name, tick))
        moved["names"].append(schedule.name)
        moved["next_run_ats"].append(start if start > horizon else schedule.next_after(horizon))
        moved["last_run_ats"].append(ticks[-1] if ticks else None)
    added: list[types.Job] = []
    if jobs["ids"]:
        added = await statements.jobs(pool, "schedule_ticks_insert", jobs, conn)
        for job in added:
            logger.info(
                "[Queue] Enqueued job %s (type: %s) for %s", job.id, job.type, job.unique_key
            )
    await conn.execute(sql.query("schedule_advance"), moved)
    return added


async def list_schedules(self: producer.Producer, queue: str | None = None) -> list[ScheduleState]:
    """The declared schedules (or those of ``queue``), by name. A schedule no scheduler
    has looked at yet shows the next tick its definition gives."""
    params = {"queue": None if queue is None else checks.check_name(queue, "queue")}
    found = []
    for row in await statements.rows(self.pool, "schedule_list", params):
        *columns, clock = row
        state = ScheduleState(*columns)
        if state.next_run_at is None:
            state = dataclasses.replace(state, next_run_at=_next_tick(state, clock))
        found.append(state)
    return found


def _next_tick(state: ScheduleState, clock: datetime.datetime) -> datetime.datetime | None:
    """The next tick of a stored definition; ``None`` if this process cannot read it (a
    time zone its system does not know)."""
    try:
        schedule = Schedule(
            state.name, state.type, cron=state.cron, every=state.every, timezone=state.timezone
        )
    except ValueError:
        return None
    return schedule.next_after(clock)


async def delete_schedule(self: producer.Producer, name: str) -> bool:
    """Forget schedule ``name`` (one no longer declared anywhere: a process that runs it
    declares it again); ``False`` if there was none. The jobs it enqueued stay."""
    params = {"name": checks.check_name(name, "schedule name")}
    deleted = bool(await statements.rows(self.pool, "schedule_delete", params))
    if deleted:
        logger.info("[Queue] Deleted schedule %s", name)
    return deleted
