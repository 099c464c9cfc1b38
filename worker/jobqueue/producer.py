"""The producer API: what a web app needs of the queue (enqueue, status, statistics).

``Producer`` holds a connection pool and runs the named queries of ``sql/queries.sql``; every
operation is one statement, so it is atomic without an explicit transaction. A web app that
only enqueues needs nothing more; ``jobqueue.Queue`` adds the worker's claim/finish calls
(``session``) and the stale-job rescue (``maintenance``) as methods.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import datetime
import logging
import os
import threading
import time
import typing
import uuid

import psycopg

from jobqueue import checks, db, settings, sql, statements, types

# The seed's log lines say [Queue], and so does their logger, whichever module writes them.
logger = logging.getLogger("jobqueue.queue")

_PRODUCER_POOL_SIZE: typing.Final = 10
# Options the bulk path reads itself; any other (run_at, max_attempts, a misspelling) goes
# through the full check.
_SIMPLE_OPTIONS: typing.Final = frozenset({"queue", "priority"})
_COPY_NULL: typing.Final = "\\N"
# Lines a bulk enqueue makes before it sends them (about 16 KiB for small payloads).
_COPY_CHUNK: typing.Final = 256
# How many appended count deltas a stats read tolerates before it folds them together.
_COUNTS_COMPACT_AFTER: typing.Final = 500
_COUNTS_LOCK_KEY: typing.Final = 0x6A6F6271_636E7473  # "jobqcnts"
# A reader that may not write (a SELECT-only role, a hot standby) skips the compaction.
_CANNOT_WRITE: typing.Final = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ReadOnlySqlTransaction,
)


# How often an enqueue with a unique key looks again for a holder that appeared and vanished.
_UNIQUE_TRIES: typing.Final = 5

# Who wakes the workers for an enqueue's jobs (migration 0010): the trigger at the commit, or
# the producer after it (``_WakeUps``).
_WAKE_UP_AT_COMMIT: typing.Final = "commit"
_WAKE_UP_BY_PRODUCER: typing.Final = "producer"


def _duplicate(job: types.Job) -> types.DuplicateJob:
    """``job`` as what an enqueue returns when it holds the key asked for."""
    return types.DuplicateJob(**{name: getattr(job, name) for name in types.JOB_FIELDS})


def empty_stats() -> types.QueueStats:
    return {status.value: 0 for status in types.JobStatus}


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format. Names hold no control characters
    (``checks.check_name``) and JSON text no raw ones, so only backslashes need escaping."""
    return value.replace("\\", "\\\\")


def _payload_field(payload: object) -> str:
    text = checks.to_json_text(payload, "payload")
    return _COPY_NULL if text is None else _copy_text(text)


# The version (7) and the RFC's variant (0b10), where RFC 9562 puts them.
_V7_BITS: typing.Final = 0x7 << 76 | 0b10 << 62


class _JobIds:
    """New job ids in the layout of UUID version 7 (RFC 9562): the time in milliseconds,
    then a 12-bit sequence, then 62 random bits. Ids made together sort together, so the
    primary key grows at its right edge instead of at a random page of a large index: on
    a table of a million jobs an insert then touches pages already in memory, and a
    worker completing a batch finds its rows side by side. (The database's own default,
    for rows inserted without an id, stays the random version 4.)"""

    _RANDOM_BLOCK: typing.Final = 512  # ids' worth of random bytes read at once

    def __init__(self) -> None:
        self._sequence = 0
        self._random = b""
        self._used = 0

    def new(self) -> int:
        """An id, as the 128-bit number it is."""
        if self._used >= len(self._random):
            self._random = os.urandom(8 * self._RANDOM_BLOCK)
            self._used = 0
        random_bits = int.from_bytes(self._random[self._used : self._used + 8]) >> 2
        self._used += 8
        self._sequence = (self._sequence + 1) & 0xFFF
        return (time.time_ns() // 1_000_000) << 80 | self._sequence << 64 | _V7_BITS | random_bits

    def many(self, count: int) -> list[int]:
        """``count`` ids made at once (a bulk enqueue's next chunk): one clock read and one
        read of random bytes for all."""
        random = os.urandom(8 * count)
        first = self._sequence + 1
        self._sequence = (self._sequence + count) & 0xFFF
        now = (time.time_ns() // 1_000_000) << 80 | _V7_BITS
        return [
            now | ((first + n) & 0xFFF) << 64 | int.from_bytes(random[8 * n : 8 * n + 8]) >> 2
            for n in range(count)
        ]


# UUID's own slots, set as its constructor ends without its argument checks: most of the
# cost of a bulk enqueue's line otherwise.
_set_uuid_int = uuid.UUID.__dict__["int"].__set__
_set_uuid_is_safe = uuid.UUID.__dict__["is_safe"].__set__
_UUID_SAFETY_UNKNOWN: typing.Final = uuid.SafeUUID.unknown  # an enum member costs a lookup a time


def _uuid_of(value: int) -> uuid.UUID:
    job_id = object.__new__(uuid.UUID)
    _set_uuid_int(job_id, value)
    _set_uuid_is_safe(job_id, _UUID_SAFETY_UNKNOWN)
    return job_id


class _PerThread(threading.local):
    # One maker a thread (two threads sharing random bytes could make the same id), and a
    # fresh one in a forked child (which would otherwise repeat its parent's).
    ids: _JobIds | None = None


_per_thread = _PerThread()
os.register_at_fork(after_in_child=lambda: setattr(_per_thread, "ids", None))


def _job_ids() -> _JobIds:
    ids = _per_thread.ids
    if ids is None:
        ids = _per_thread.ids = _JobIds()
    return ids


def new_job_id() -> uuid.UUID:
    """A new job's id: time-ordered (see ``_JobIds``)."""
    return _uuid_of(_job_ids().new())


class _CopyBatch:
    """New jobs as lines of COPY's text format, checked one by one as they are added; names
    repeat across a batch, so each distinct one is checked once."""

    def __init__(self, queue: str, now: datetime.datetime | None) -> None:
        self.queue = queue
        self.now = now
        self.ids: list[uuid.UUID] = []
        self._due_now: list[str] = []  # run_at: the database's now()
        self._timed: list[str] = []  # run_at given (or the caller's now)
        self._names: dict[str, str] = {}
        self._middles: dict[tuple[str, str, int, int], str] = {}
        self._plain: dict[str, str] = {}  # job type: its middle with no options
        self._ids = _job_ids()
        self._fresh_ids: list[int] = []
        # Jobs with a unique key, checked, with their place in ``ids``: COPY cannot skip a
        # key that is held, so they are inserted after it, by the unique enqueue; so are jobs
        # with a concurrency key (a column COPY's lines leave out: they cost the many
        # without one nothing).
        self.unique: list[tuple[int, dict[str, typing.Any]]] = []

    def _name(self, value: object, what: str) -> str:
        if isinstance(value, str):
            known = self._names.get(value)
            if known is not None:
                return known
        checked = _copy_text(checks.check_name(value, what))
        self._names[typing.cast(str, value)] = checked
        return checked

    def _next_id(self) -> int:
        """The next job's id, kept in ``ids`` too; made a chunk at a time, so the ids of a
        batch sort in the order of its jobs."""
        if not self._fresh_ids:
            self._fresh_ids = self._ids.many(_COPY_CHUNK)[::-1]  # popped from the end
        value = self._fresh_ids.pop()
        self.ids.append(_uuid_of(value))
        return value

    def add(self, job: types.NewJob) -> None:
        options = job.options
        if not options and self.now is None and job.type.__class__ is str:
            # Most jobs of a batch: a type seen before, no options, due now.
            middle = self._plain.get(job.type)
            if middle is not None:
                payload = _payload_field(job.payload)
                value = self._next_id()
                self._due_now.append(f"{value:032x}{middle}{payload}\n")
                return
        if options and not options.keys() <= _SIMPLE_OPTIONS:
            column = checks.check_new_job(job)  # the rare options, and the errors, as usual
            if column["unique_key"] is not None or column["concurrency_key"] is not None:
                self.unique.append((len(self.ids), column))
                self._next_id()
                return
            run_at, max_attempts, queue = column["run_at"], column["max_attempts"], column["queue"]
            priority = column["priority"]
        else:
            run_at, max_attempts = None, None
            queue = options.get("queue")
            priority = options.get("priority", 0)
            bound = checks.INT32_MAX  # check_new_job's bounds, checked inline when plain
            if priority.__class__ is not int or not -bound <= priority <= bound:
                priority = int(checks.check_int(priority, "priority", minimum=-bound))
        payload = _payload_field(job.payload)
        # Everything between the id and the payload repeats across a batch: made once.
        key = (
            self._name(job.type, "job type"),
            self._name(queue or self.queue, "queue"),
            priority,
            checks.DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts,
        )
        middle = self._middles.get(key)
        if middle is None:
            job_type, queue_name, priority, attempts = key
            middle = f"\t{job_type}\t{attempts}\t{queue_name}\t{priority}\t"
            self._middles[key] = middle
        if not options:
            self._plain[job.type] = middle
        # The id as 32 hex digits, which PostgreSQL reads as a uuid.
        line = f"{self._next_id():032x}{middle}{payload}"
        when = run_at or self.now
        if when is None:
            self._due_now.append(line + "\n")
        else:
            self._timed.append(f"{line}\t{when.isoformat()}\n")

    async def copy(
        self,
        conn: psycopg.AsyncConnection[typing.Any],
        more: collections.abc.Iterator[types.NewJob] | None = None,
    ) -> None:
        """Write the jobs added so far, then, if ``more`` is given, add and write those too
        as they come, a chunk at a time (the server stores them when the COPY ends: its
        insert buffer holds more rows than a chunk). Jobs with their own ``run_at`` go in a
        second COPY at the end."""
        cursor = conn.cursor()
        if self._due_now or more is not None:
            async with cursor.copy(sql.query("job_copy_in")) as copy:
                for job in more or ():
                    self.add(job)
                    if len(self._due_now) >= _COPY_CHUNK:
                        await _send(copy, self._due_now)
                await _send(copy, self._due_now)
        if self._timed:
            async with cursor.copy(sql.query("job_copy_in_at")) as copy:
                await _send(copy, self._timed)


async def _send(copy: psycopg.AsyncCopy, lines: list[str]) -> None:
    """Hand ``lines`` to the COPY under way, and forget them."""
    if lines:
        await copy.write("".join(lines).encode())
        lines.clear()


class _WakeUps:
    """Who wakes the workers for this producer's enqueues (migration 0010). At its commit
    the trigger's notification waits its turn for one lock of the whole server, held across
    the flush: notifying commits cannot share a flush. So while this producer has other
    enqueues or a notification in flight, an enqueue leaves it to the producer, which sends
    it after the commit, one at a time, for every queue enqueued into since the last one
    started: under load one wakes the workers for many commits, and a commit is always
    followed by a notification that started after it, when its job was visible. An enqueue
    alone lets the trigger notify: nothing shares its flush, and it costs no statement more.
    A failed notification is logged and the workers find the jobs at their next poll: the
    jobs are committed whatever happens here."""

    __slots__ = ("_in_flight", "_pool", "_queues", "_sending", "sent")

    def __init__(self, pool: statements.Pool) -> None:
        self._pool = pool
        self._in_flight = 0  # enqueues of this producer under way, on its own connections
        self._queues: set[str] = set()
        self._sending: asyncio.Task[None] | None = None
        self.sent = 0  # notifying statements, for the benchmarks

    @contextlib.contextmanager
    def enqueue(
        self,
        conn: psycopg.AsyncConnection[typing.Any] | None,
        queues: collections.abc.Iterable[str],
    ) -> collections.abc.Iterator[str]:
        """Around one enqueue statement into ``queues``: gives who wakes the workers (its
        ``wake_up`` parameter), and wakes them after it returned if that is the producer.
        With ``conn`` (the application's transaction) the trigger does, at its commit."""
        if conn is not None:
            yield _WAKE_UP_AT_COMMIT
            return
        alone = not self._in_flight and self._sending is None
        self._in_flight += 1
        try:
            yield _WAKE_UP_AT_COMMIT if alone else _WAKE_UP_BY_PRODUCER
        finally:
            self._in_flight -= 1
        if not alone:
            self.after_commit(queues)

    def after_commit(self, queues: collections.abc.Iterable[str]) -> None:
        """Jobs of ``queues`` have committed: wake their workers, soon."""
        self._queues.update(queues)
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            # What arrives while one is sent goes in the next one; a poke finds the task
            # either before this test (and is sent) or finished (and starts another).
            while self._queues:
                queues, self._queues = sorted(self._queues), set()
                try:
                    await statements.rows(self._pool, "queue_wake_up", {"queues": queues})
                    self.sent += 1
                except psycopg.Error as error:
                    logger.warning(
                        "[Queue] Could not wake the workers of %s (they find the jobs at their"
                        " next poll): %s",
                        ", ".join(queues),
                        str(error).strip(),
                    )
        finally:
            self._sending = None

    async def flush(self) -> None:
        """Wait until the notifications for the enqueues so far are sent."""
        sending = self._sending
        if sending is not None:
            await asyncio.shield(sending)


class Producer:
    """The producer API over one database. Use as ``async with Producer(url) as queue: ...``,
    or call ``open()``/``close()``. ``queue`` is the default queue name for enqueue and claim;
    ``prepared_statements=False`` when connecting through PgBouncer in transaction mode
    (default: ``JOBQUEUE_PREPARED_STATEMENTS``)."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        pool: statements.Pool | None = None,
        queue: str = checks.DEFAULT_QUEUE,
        retry_delay: float | None = None,
        pool_max_size: int | None = None,
        pool_timeout: float | None = None,
        prepared_statements: bool | None = None,
    ) -> None:
        self.queue = checks.check_name(queue, "queue")
        # Settings not given come from the environment, as for the command line.
        self.retry_delay: float = settings.RETRY_DELAY.check(
            settings.RETRY_DELAY.from_env() if retry_delay is None else retry_delay
        )
        pool_max_size = settings.POOL_SIZE.check(pool_max_size) or settings.POOL_SIZE.from_env()
        pool_timeout = settings.POOL_TIMEOUT.check(pool_timeout or settings.POOL_TIMEOUT.from_env())
        self._owns_pool = pool is None
        self._may_write = True  # until the database says this role or server cannot
        if pool is not None and isinstance(pool.conninfo, str):
            self.conninfo = pool.conninfo
        else:
            self.conninfo = db.resolve_database_url(database_url)
        self.pool: statements.Pool = pool or db.make_pool(
            self.conninfo,
            max_size=pool_max_size or _PRODUCER_POOL_SIZE,
            timeout=pool_timeout,
            prepared_statements=settings.PREPARED_STATEMENTS.check(prepared_statements)
            if prepared_statements is not None
            else settings.PREPARED_STATEMENTS.from_env(),
        )
        # Single enqueues, one after another, keep a connection (see ``enqueue_job``).
        self._kept = db.KeptConnection(self.pool)
        self._wake_ups = _WakeUps(self.pool)

    async def open(self) -> typing.Self:
        if self._owns_pool:
            # One direct connection first: it fails at once with the server's own reason
            # (refused, bad password, no such database), where the pool would retry quietly
            # until its timeout and then say only that it timed out.
            probe = await psycopg.AsyncConnection.connect(
                self.conninfo, **db.connect_options(self.conninfo)
            )
            await probe.close()
            await self.pool.open(wait=True)
        return self

    async def close(self) -> None:
        await self._wake_ups.flush()  # the last enqueues' workers woken before the pool goes
        await self._kept.release()  # a shared pool gets it back too
        if self._owns_pool:
            await self.pool.close()

    async def __aenter__(self) -> typing.Self:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # enqueue ---------------------------------------------------------------------------

    async def enqueue_job(
        self,
        type: str,
        payload: typing.Any = None,
        *,
        now: datetime.datetime | None = None,
        conn: psycopg.AsyncConnection[typing.Any] | None = None,
        **options: typing.Unpack[types.JobOptions],
    ) -> types.Job:
        """Add one job; returns it as stored (``.id`` is its UUID). ``options`` are
        ``types.JobOptions``: ``run_at``, ``max_attempts``, ``queue``, ``priority``. With
        ``conn``, the insert joins that connection's current transaction: the job exists
        only if the application's own writes in it commit too.

        One round trip, on a connection kept between calls (``db.KeptConnection``) unless
        another task is using it. The database returns only what the client cannot know:
        the default ``max_attempts`` and its clock, ``created_at``; the other columns are
        what was sent (the payload as the JSON stored, decoded again) or what the
        statement makes of it: the defaults of ``status`` and ``attempts``, ``run_at`` as
        given (else ``now``, else the clock) and ``updated_at`` the same clock."""
        params = checks.check_job_arguments(type, payload, options)
        params["id"] = new_job_id()
        params["queue"] = params["queue"] or self.queue
        params["now"] = now = checks.check_time(now, "now")
        if params["unique_key"] is not None:
            (job,) = await self._enqueue_unique_jobs([params], [params["id"]], now, conn)
            if isinstance(job, types.DuplicateJob):
                logger.info("[Queue] Job %s already holds unique key %s", job.id, job.unique_key)
            else:
                logger.info("[Queue] Enqueued job %s (type: %s)", job.id, job.type)
            return job
        query = sql.query("job_insert")
        with self._wake_ups.enqueue(conn, (params["queue"],)) as params["wake_up"]:
            if conn is None:
                row = await self._kept.fetchone(query, params)
            else:
                row = await db.fetchone_plainly(conn, query, params)
        assert row is not None  # an INSERT ... RETURNING of one row
        max_attempts, created_at = row
        run_at = params["run_at"] or now
        text = params["payload"]
        job = types.Job(
            params["id"],
            params["type"],
            types.JobStatus.PENDING,
            None if text is None else db.load_json(text),
            None,  # result
            0,  # attempts
            max_attempts,
            created_at if run_at is None else run_at.astimezone(datetime.UTC),
            None,  # locked_at
            None,  # locked_by
            None,  # error
            created_at,
            created_at,  # updated_at
            params["queue"],
            params["priority"],
            concurrency_key=params["concurrency_key"],
        )
        logger.info("[Queue] Enqueued job %s (type: %s)", job.id, job.type)
        return job

    async def enqueue_jobs(
        self,
        jobs: collections.abc.Iterable[types.NewJob],
        *,
        now: datetime.datetime | None = None,
        conn: psycopg.AsyncConnection[typing.Any] | None = None,
    ) -> list[types.Job]:
        """Add many jobs in one statement (one round trip); returns them in the given order.
        All are checked before any is written: one bad job enqueues none. With ``conn``, the
        insert joins that connection's current transaction."""
        checked = [checks.check_new_job(job) for job in jobs]
        if not checked:
            return []
        ids = [new_job_id() for _ in checked]
        if any(job["unique_key"] is not None for job in checked):
            in_order = await self._enqueue_unique_jobs(checked, ids, now, conn)
            added = sum(not isinstance(job, types.DuplicateJob) for job in in_order)
            logger.info(
                "[Queue] Enqueued %d jobs (%d already held their unique keys)",
                added,
                len(in_order) - added,
            )
            return in_order
        params: dict[str, typing.Any] = self._columns(checked, ids)
        params["now"] = checks.check_time(now, "now")
        with self._wake_ups.enqueue(conn, params["queues"]) as params["wake_up"]:
            rows = await statements.jobs(
                self.pool,
                "job_insert_many",
                params,
                conn,
                times_in_range=True,  # its times are checked ones or now()
            )
        stored = {job.id: job for job in rows}
        in_order = [stored[job_id] for job_id in ids]
        for job in in_order:
            logger.debug("[Queue] Enqueued job %s (type: %s)", job.id, job.type)
        logger.info("[Queue] Enqueued %d jobs", len(in_order))
        return in_order

    def _columns(
        self, checked: list[dict[str, typing.Any]], ids: list[uuid.UUID]
    ) -> dict[str, list[typing.Any]]:
        """Checked new jobs as the arrays of a many-row insert, one element a job."""
        return {
            "ids": ids,
            "types": [job["type"] for job in checked],
            "payloads": [job["payload"] for job in checked],
            "run_ats": [job["run_at"] for job in checked],
            "max_attempts": [job["max_attempts"] for job in checked],
            "queues": [job["queue"] or self.queue for job in checked],
            "priorities": [job["priority"] for job in checked],
            "concurrency_keys": [job["concurrency_key"] for job in checked],
        }

    async def _enqueue_unique_jobs(
        self,
        checked: list[dict[str, typing.Any]],
        ids: list[uuid.UUID],
        now: datetime.datetime | None,
        conn: psycopg.AsyncConnection[typing.Any] | None,
    ) -> list[types.Job]:
        """Jobs of which some have unique keys, checked (``enqueue_job``'s one, too): each
        job, or the one holding its key (a ``DuplicateJob``), in the given order."""
        columns = self._columns(checked, ids)
        columns["unique_keys"] = [job["unique_key"] for job in checked]
        columns["unique_fors"] = [job["unique_for"] for job in checked]
        checked_now = checks.check_time(now, "now")
        result: dict[int, types.Job] = {}
        todo = list(range(len(checked)))
        for _ in range(_UNIQUE_TRIES):
            params: dict[str, typing.Any] = {
                name: [values[index] for index in todo] for name, values in columns.items()
            }
            params["now"] = checked_now
            with self._wake_ups.enqueue(conn, params["queues"]) as params["wake_up"]:
                rows = await statements.jobs(self.pool, "job_insert_many_unique", params, conn)
            by_id = {job.id: job for job in rows}
            # Who holds each key (with its scope): added now, or before.
            holders = {(job.unique_key, job.unique_period_start is None): job for job in rows}
            left = []
            for index in todo:
                job = by_id.get(ids[index])
                if job is None:
                    key = (checked[index]["unique_key"], checked[index]["unique_for"] is None)
                    holder = holders.get(key)
                    if holder is not None:
                        job = _duplicate(holder)
                if job is None:
                    left.append(index)  # held by an insert not yet visible: look again
                else:
                    result[index] = job
            todo = left
            if not todo:
                break
        else:
            raise types.JobQueueError(
                f"could not enqueue {len(todo)} jobs with unique keys: their keys were taken"
                f" and freed {_UNIQUE_TRIES} times while trying"
            )
        return [result[index] for index in range(len(checked))]

    async def enqueue_batch(
        self,
        jobs: collections.abc.Iterable[types.NewJob],
        *,
        now: datetime.datetime | None = None,
        conn: psycopg.AsyncConnection[typing.Any] | None = None,
    ) -> list[uuid.UUID]:
        """Add many jobs as fast as the database takes them (``COPY``); returns their ids,
        in the given order, and nothing else. They are written in one transaction, all or
        none: one bad job enqueues none and raises its error. With ``conn``, the copy joins
        that connection's current transaction, and all are checked before any is sent."""
        batch = _CopyBatch(self.queue, checks.check_time(now, "now"))
        given = iter(jobs)
        if conn is not None:
            for job in given:  # all checked before the caller's transaction sees any
                batch.add(job)
            if not batch.ids:
                return []
            await batch.copy(conn)
            await self._add_unique(batch, conn)
        else:
            first = next(given, None)
            if first is None:
                return []
            batch.add(first)
            # Checked as they are written: a bad one rolls back the transaction, and with
            # it every job before it.
            async with db.Lease(self.pool) as pooled, pooled.transaction():
                await batch.copy(pooled, given)
                await self._add_unique(batch, pooled)
        logger.info("[Queue] Enqueued %d jobs", len(batch.ids))
        return batch.ids

    async def _add_unique(
        self, batch: _CopyBatch, conn: psycopg.AsyncConnection[typing.Any]
    ) -> None:
        """The batch's jobs with unique keys, in its transaction; where a key is held, the
        holder's id takes the place of the job's."""
        if not batch.unique:
            return
        places = [place for place, _ in batch.unique]
        jobs = await self._enqueue_unique_jobs(
            [column for _, column in batch.unique],
            [batch.ids[place] for place in places],
            batch.now,
            conn,
        )
        for place, job in zip(places, jobs, strict=True):
            batch.ids[place] = job.id

    # read ------------------------------------------------------------------------------

    async def get_job_status(self, job_id: uuid.UUID | str) -> types.Job | None:
        """The job with this id, or ``None`` when there is none."""
        jobs = await statements.jobs(self.pool, "job_get", {"id": checks.check_job_id(job_id)})
        return jobs[0] if jobs else None

    async def _counts(self, queue: str | None) -> dict[str, types.QueueStats]:
        """``{type: stats}`` summed over the queue (or all queues)."""
        async with db.Lease(self.pool) as conn:
            cursor = await conn.execute(sql.query("job_counts_sum"), {"queue": queue})
            rows = await cursor.fetchall()
            if sum(row[7] for row in rows) > _COUNTS_COMPACT_AFTER and self._may_write:
                try:
                    await self._compact_counts(conn)
                except _CANNOT_WRITE as error:
                    self._may_write = False
                    logger.info("[Queue] Not compacting the statistics: %s", str(error).strip())
        by_type: dict[str, types.QueueStats] = {}
        statuses = [status.value for status in types.JobStatus]
        for row in rows:
            stats = by_type.setdefault(row[1], empty_stats())
            for status, count in zip(statuses, row[2:7], strict=True):
                stats[status] += int(count)
        return by_type

    async def compact_counts(self) -> bool:
        """Fold the statistics' appended deltas together (workers call this every few
        seconds); ``False`` when another process was already doing it."""
        async with db.Lease(self.pool) as conn:
            return await self._compact_counts(conn)

    @staticmethod
    async def _compact_counts(conn: psycopg.AsyncConnection[typing.Any]) -> bool:
        async with conn.transaction():
            if not await statements.try_lock(conn, _COUNTS_LOCK_KEY):
                return False
            await conn.execute(sql.query("job_counts_compact"))
            return True

    async def get_queue_stats(
        self, *, queue: str | None = None, type: str | None = None
    ) -> types.QueueStats:
        """``{pending, running, failed, done, cancelled}``, zeros included; over every queue unless
        ``queue`` is given, every type unless ``type`` is. Reads a few counter rows, never
        the jobs table, so it costs the same with a million finished jobs as with none."""
        if queue is not None:
            checks.check_name(queue, "queue")
        if type is not None:
            checks.check_name(type, "job type")
        stats = empty_stats()
        for row_type, counts in (await self._counts(queue)).items():
            if type is None or row_type == type:
                for status, count in counts.items():
                    stats[status] += count
        return stats

    async def count_from_statistics(
        self,
        queue: str | None,
        job_types: collections.abc.Collection[str] | None,
        statuses: collections.abc.Collection[str] | None,
    ) -> int:
        """How many jobs of ``statuses`` and ``job_types`` (``None``: any) ``queue`` (or
        every queue) holds, from the statistics: exact, without counting the jobs."""
        by_type = await self._counts(queue)
        wanted = statuses or [status.value for status in types.JobStatus]
        return sum(
            stats[status]
            for job_type, stats in by_type.items()
            if job_types is None or job_type in job_types
            for status in wanted
        )

    async def get_queue_stats_by_type(
        self, *, queue: str | None = None
    ) -> dict[str, types.QueueStats]:
        """``{type: {pending, running, ...}}`` for every type that has had jobs."""
        if queue is not None:
            checks.check_name(queue, "queue")
        by_type = await self._counts(queue)
        return {row_type: by_type[row_type] for row_type in sorted(by_type)}
