"""The chaos suite: real worker processes under random faults, then proof that every job
ran, ran to an end, and never ran twice at once.

A private embedded PostgreSQL gets ``jobs`` (plain work, work that fails once, work that
always fails, work that snoozes once, and poisoned payloads written by raw SQL). Worker
processes run them while a fault schedule, drawn from a seeded random generator, does one
thing at a time: ``kill -9`` a worker, SIGTERM one, SIGTERM one twice, restart the database,
make the whole server read-only for a moment, or hold a REPEATABLE READ transaction open for
a few seconds (vacuum held back); or, as an operator would, cancel a few pending and running
jobs, or retry the failed ones and pause the queue for a moment (both through the web UI's
API, a ``jobqueue ui`` process: each confirmed action must be in its audit trail, and a
pause must always be undone); or, as producers would, enqueue jobs whose unique keys collide
and single jobs from a few threads at once (each woken by the producer after its commit).
A quarter of the jobs run on behalf of seven tenants (concurrency keys), at most three of a
tenant's at once and one of tenant-0's, checked from the executions.
Meanwhile every worker runs a periodic schedule ticking each second (with catch-up: no tick
may be missed, none enqueued twice), and every other worker claims after its last claim's
place (``--slow-claim 0``: as workers whose claims turned slow do, with a full claim each
second). A killed or stopped worker is replaced at once. When the faults end the workers are
replaced by ones without the schedule (a graceful rollout), and the database is left alone
until every job has ended.

Each execution's start and end is appended by the handler to a file of its own process
(``jobqueue_chaos_handlers``), then loaded into the ``chaos_executions`` table, where the
checks run as SQL: no two executions of one job overlap (an execution with no end counts
until its process was killed), every re-run follows an execution that failed, was stopped,
or whose process was killed, and every job is ``done`` or ``failed`` with a reason, or
``cancelled`` if and only if the suite cancelled it, with no run begun after its cancel.

``tests/e2e/test_chaos.py`` runs a short form in ``make test``; ``bench/chaos.py`` (``make
chaos``) runs the long form and prints the figures.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import pathlib
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request

import psycopg
import psycopg.conninfo
import waiting

import jobqueue
from cluster import children
from jobqueue import embedded
from jobqueue import settings as core_settings

JOBQUEUE: typing.Final = str(pathlib.Path(sys.executable).with_name("jobqueue"))
SUPPORT: typing.Final = str(pathlib.Path(__file__).parent)
FAULTS: typing.Final = (
    "kill",
    "sigterm",
    "double_sigterm",
    "restart",
    "read_only",
    "cancel",
    "retry",
    "produce",
    "pause",
    "hold",
)
# How many pending or running jobs one "cancel" fault cancels.
CANCELS_AT_ONCE: typing.Final = 12
# The "produce" fault's unique keys are held for a day: longer than any run.
UNIQUE_FOR: typing.Final = 86_400.0
# The concurrency keys of a quarter of the jobs, and how many of each may run at once (one
# for tenant-0).
TENANTS: typing.Final = 7
PER_TENANT: typing.Final = 3
# Its single enqueues: threads at once, jobs each.
PRODUCERS: typing.Final = 4
SINGLES_EACH: typing.Final = 5
# The schedule every worker runs during the faults (``jobqueue_chaos_handlers``): a tick a
# second, and enough catch-up that a database outage misses none.
SCHEDULE_ENV: typing.Final = "CHAOS_SCHEDULE"
SCHEDULE_KEY: typing.Final = "schedule:chaos-pulse@%"
# Seconds: longer than any fault lasts (a restart, a read-only window of up to 2.5 s), so a
# live worker is never taken for dead; its lease (half of it) is shorter than some windows.
STALE_THRESHOLD: typing.Final = 5
# The admin token of the web UI the suite runs: its "retry" and "pause" faults go through
# the UI's API, as an operator's clicks would, and each must leave an audit entry.
UI_TOKEN: typing.Final = secrets.token_hex(16)


@dataclasses.dataclass(frozen=True)
class Settings:
    jobs: int = 2000
    workers: int = 3
    concurrency: int = 8
    duration: float = 25.0  # seconds of faults
    fault_every: float = 1.5  # seconds between faults, on average
    work_ms: int = 250  # average pretend work per job: the jobs outlast the faults
    seed: int = 7
    finish_within: float = 120.0


@dataclasses.dataclass
class Report:
    jobs: int = 0
    executions: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    unfinished: int = 0
    failed_without_reason: int = 0
    wrong_outcome: int = 0
    overlaps: int = 0
    # Per concurrency key, the most of its executions at once; keys that ran over its limit.
    most_at_once: dict[str, int] = dataclasses.field(default_factory=dict)
    over_limit: int = 0
    runs_after_cancel: int = 0
    unique_keys: int = 0
    duplicate_holders: int = 0
    ticks: int = 0
    missed_ticks: int = 0
    unexplained_reruns: int = 0
    ui_actions: int = 0  # actions the UI confirmed (each must be in the audit trail)
    ui_unavailable: int = 0  # asked while its database was away: answered 503, not done
    unaudited_actions: int = 0
    stuck_paused: int = 0  # a pause the UI could not undo within a minute
    reruns: dict[str, int] = dataclasses.field(default_factory=dict)
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    rescue_seconds: list[float] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> str:
        rescue = (
            f"kill-to-rerun p50 {statistics.median(self.rescue_seconds):.2f}s,"
            f" max {max(self.rescue_seconds):.2f}s over {len(self.rescue_seconds)} jobs"
            if self.rescue_seconds
            else "no in-flight job was killed"
        )
        return (
            f"{self.jobs} jobs, {self.executions} executions in {self.elapsed:.0f}s;"
            f" done {self.done}, failed {self.failed}, cancelled {self.cancelled},"
            f" unfinished {self.unfinished}; retried {self.retried};"
            f" faults {self.faults}; re-runs after {self.reruns};"
            f" overlaps {self.overlaps}, runs after a cancel {self.runs_after_cancel},"
            f" most at once per tenant {dict(sorted(self.most_at_once.items()))} (over its"
            f" limit: {self.over_limit}),"
            f" unique keys {self.unique_keys} (held twice: {self.duplicate_holders}),"
            f" schedule ticks {self.ticks} (missed: {self.missed_ticks}),"
            f" UI actions {self.ui_actions} (unaudited: {self.unaudited_actions}, refused"
            f" while the database was away: {self.ui_unavailable}, stuck paused:"
            f" {self.stuck_paused}),"
            f" unexplained re-runs {self.unexplained_reruns},"
            f" failed without reason {self.failed_without_reason},"
            f" wrong outcome {self.wrong_outcome}; {rescue}"
        )


def count_of(conn: psycopg.Connection[typing.Any], query: str) -> int:
    """The number a ``SELECT count(*)`` query (with no parameters) returns."""
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


class Chaos:
    def __init__(self, folder: pathlib.Path, settings: Settings) -> None:
        self.folder = folder
        self.settings = settings
        self.random = random.Random(settings.seed)
        self.logs = folder / "executions"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.server: contextlib.AbstractContextManager[str] | None = None
        self.url = ""
        self.workers: list[subprocess.Popen[bytes]] = []
        self.killed: dict[int, float] = {}  # pid -> when it was sent SIGKILL
        self.faults: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.started = 0
        # Jobs the suite cancelled, with the attempts they had made then: no run of a later
        # attempt may begin. And how many failed jobs it put back.
        self.cancelled: dict[str, int] = {}
        self.retried = 0
        self.unique_rounds = 0
        self.scheduling = True  # whether new workers run the schedule
        self.ui: subprocess.Popen[bytes] | None = None
        self.ui_url = ""
        self.ui_actions = 0
        self.ui_unavailable = 0
        self.stuck_paused = 0

    # --- the database -------------------------------------------------------------------------

    def start_server(self) -> None:
        self.server = embedded.embedded_postgres(self.folder / "pgdata")
        server_url = self.server.__enter__()
        self.url = psycopg.conninfo.make_conninfo(server_url, dbname="chaos")

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None

    def admin(self) -> psycopg.Connection[typing.Any]:
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute("SET default_transaction_read_only = off")
        return conn

    def prepare(self) -> None:
        self.start_server()
        server_url = psycopg.conninfo.make_conninfo(self.url, dbname="postgres")
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS chaos")
            conn.execute("CREATE DATABASE chaos")
        subprocess.run([JOBQUEUE, "db", "migrate", "--database-url", self.url], check=True)
        self.start_ui()
        plan = []
        for index in range(self.settings.jobs):
            payload: dict[str, typing.Any] = {"ms": self.settings.work_ms}
            if index % 50 == 1:
                payload["fail"] = "always"
            elif index % 10 == 2:
                payload["fail"] = "first"
            elif index % 10 == 5:
                payload["snooze"] = True
            # A quarter of the jobs run on behalf of tenants, each limited.
            key = f"tenant-{index % TENANTS}" if index % 4 == 3 else None
            plan.append(jobqueue.NewJob("chaos.work", payload, max_attempts=3, concurrency_key=key))
        with jobqueue.SyncQueue(self.url) as queue:
            queue.limit_concurrency(PER_TENANT, per_key=True)
            queue.limit_concurrency(1, key="tenant-0")
            queue.enqueue_jobs(plan)
        with self.admin() as conn:
            poisoned = max(1, self.settings.jobs // 100)
            # Due before the rest, so they have failed by the time the suite retries them.
            conn.execute(
                "INSERT INTO jobs (type, payload, run_at) SELECT 'chaos.work',"
                " (repeat('[', 980) || repeat(']', 980))::jsonb, now() - interval '1 minute'"
                " FROM generate_series(1, %s)",
                [poisoned],
            )

    # --- the web UI ---------------------------------------------------------------------------

    def start_ui(self) -> None:
        port = children.free_port()
        self.ui_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "JOBQUEUE_UI_ADMIN_TOKEN": UI_TOKEN}
        with open(self.folder / "ui.log", "wb") as output:
            self.ui = subprocess.Popen(
                [JOBQUEUE, "ui", "--database-url", self.url, "--port", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
            )
        waiting.eventually_sync(
            lambda: self.ui_call("GET", "/healthz")[0] == 200, timeout=30, what="the UI up"
        )

    def ui_call(self, method: str, path: str, body: object = None) -> tuple[int, typing.Any]:
        """The status and JSON (or text) of a call to the UI's API with the admin token;
        status 0 when it cannot be reached."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.ui_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {UI_TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read().decode()
                status = answer.status
        except urllib.error.HTTPError as error:
            text, status = error.read().decode(), error.code
        except OSError:
            return 0, None
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def ui_action(self, path: str, body: object = None) -> typing.Any:
        """An action through the UI; ``None`` when it was refused because the database was
        away (a restart or read-only window under way)."""
        status, answer = self.ui_call("POST", path, body)
        if status == 503 or (status == 500 and "read-only" in str(answer)):
            self.ui_unavailable += 1
            return None
        assert status == 200, (path, status, answer)
        self.ui_actions += 1
        return answer

    def pause_for_a_while(self) -> None:
        """Pause the jobs' queue through the UI, then resume it (retried until the UI can):
        jobs wait meanwhile, none is lost."""
        if self.ui_action("/api/queues/default/pause") is None:
            return
        # How long the pause lasts (not a wait for anything).
        time.sleep(self.random.uniform(0.2, 1.5))

        def resumed() -> bool:
            return self.ui_action("/api/queues/default/resume") is not None

        try:
            waiting.eventually_sync(resumed, timeout=60, interval=0.5, what="the queue resumed")
        except AssertionError:
            self.stuck_paused += 1
            with jobqueue.SyncQueue(self.url, pool_max_size=1) as queue:
                queue.resume_queue("default")  # so that the run can end and be reported

    # --- workers ------------------------------------------------------------------------------

    def start_worker(self) -> None:
        self.started += 1
        env = {**os.environ, "PYTHONPATH": SUPPORT, "CHAOS_LOG_DIR": str(self.logs)}
        env[SCHEDULE_ENV] = "1" if self.scheduling else ""
        with open(self.folder / f"worker-{self.started}.log", "wb") as output:
            process = subprocess.Popen(
                [
                    JOBQUEUE,
                    "worker",
                    "--import",
                    "jobqueue_chaos_handlers",
                    "--database-url",
                    self.url,
                    "--worker-id",
                    f"chaos-{self.started}",
                    "--concurrency",
                    str(self.settings.concurrency),
                    "--poll-interval",
                    "0.5",
                    "--heartbeat-interval",
                    "0.3",
                    "--stale-threshold",
                    str(STALE_THRESHOLD),
                    "--rescue-interval",
                    "0.5",
                    "--grace-timeout",
                    "1",
                    # Every other worker claims after its last claim's place, as workers
                    # whose claims turned slow do, with a full claim every second.
                    "--slow-claim",
                    "0" if self.started % 2 else str(core_settings.SLOW_CLAIM.default),
                    "--log-level",
                    "warning",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.workers.append(process)

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [worker for worker in self.workers if worker.poll() is None]

    def keep_workers_up(self) -> None:
        for _ in range(self.settings.workers - len(self.live_workers())):
            self.start_worker()

    # --- faults -------------------------------------------------------------------------------

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1
        if kind in ("cancel", "retry", "produce"):
            self.operate(kind)
            return
        if kind == "pause":
            self.pause_for_a_while()
            return
        victim = self.random.choice(self.live_workers())
        if kind == "kill":
            self.killed[victim.pid] = time.time()
            victim.kill()
            victim.wait(timeout=30)
        elif kind == "sigterm":
            victim.send_signal(signal.SIGTERM)
        elif kind == "double_sigterm":
            victim.send_signal(signal.SIGTERM)
            victim.send_signal(signal.SIGTERM)
        elif kind == "restart":
            self.stop_server()
            self.start_server()
        elif kind == "hold":
            # An analytics query: a REPEATABLE READ snapshot held open, so that nothing
            # claimed or finished meanwhile can be vacuumed (the fault lasts this long).
            with self.admin() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                conn.execute("SELECT count(*) FROM jobs")
                time.sleep(self.random.uniform(1.0, 4.0))
        elif kind == "read_only":
            with self.admin() as conn:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                conn.execute("SELECT pg_reload_conf()")
                # The fault lasts this long (not a wait for anything): sometimes long enough
                # for the workers' leases (half the stale threshold) to lapse.
                time.sleep(self.random.uniform(0.5, 2.5))
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
                conn.execute("SELECT pg_reload_conf()")
        self.keep_workers_up()

    def operate(self, kind: str) -> None:
        """What an operator does meanwhile: cancel a few pending and running jobs, or put
        the failed ones back to run again; or what producers do: enqueue jobs whose unique
        keys collide (held for the whole run: one job each, however often enqueued), and
        single jobs from a few threads at once, each woken by the producer after its commit
        (coalesced), the last ones as the producer closes."""
        with jobqueue.SyncQueue(self.url, pool_max_size=PRODUCERS + 2) as queue:
            if kind == "produce":
                with concurrent.futures.ThreadPoolExecutor(PRODUCERS) as producers:
                    list(
                        producers.map(
                            lambda _: queue.enqueue_job(
                                "chaos.work", {"ms": self.settings.work_ms}
                            ),
                            range(PRODUCERS * SINGLES_EACH),
                        )
                    )
                self.unique_rounds += 1
                keys = [f"chaos-{self.unique_rounds}-{n}" for n in range(5)]
                for _ in range(2):
                    queue.enqueue_jobs(
                        jobqueue.NewJob(
                            "chaos.work",
                            {"ms": self.settings.work_ms},
                            unique_key=self.random.choice(keys),
                            unique_for=UNIQUE_FOR,
                        )
                        for _ in range(len(keys))
                    )
                return
            if kind == "retry":  # through the UI, every failed job
                answer = self.ui_action("/api/jobs/retry", {"filter": {"statuses": ["failed"]}})
                if answer is not None:
                    self.retried += answer["changed"]
                return
            with self.admin() as conn:
                picked = conn.execute(
                    "SELECT id FROM jobs WHERE status IN ('pending', 'running')"
                    " ORDER BY random() LIMIT %s",
                    [CANCELS_AT_ONCE],
                ).fetchall()
            if picked:
                asked = queue.cancel_jobs(jobqueue.JobFilter(ids=[row[0] for row in picked]))
                self.cancelled.update({str(job.id): job.attempts for job in asked})

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> Report:
        began = time.monotonic()
        self.prepare()
        try:
            self.keep_workers_up()
            end_of_faults = time.monotonic() + self.settings.duration
            upcoming: list[str] = []
            while time.monotonic() < end_of_faults:
                # The schedule's spacing between faults (not a wait for anything).
                time.sleep(self.random.expovariate(1 / self.settings.fault_every))
                if time.monotonic() >= end_of_faults:
                    break
                if not upcoming:  # every kind of fault in each round, in a random order
                    upcoming = self.random.sample(FAULTS, len(FAULTS))
                self.fault(upcoming.pop())
                self.keep_workers_up()
            self.stop_scheduling()
            self.wait_until_every_job_ends()
            report = self.check()
        finally:
            if self.ui is not None:
                self.ui.send_signal(signal.SIGTERM)
            for worker in self.live_workers():
                worker.send_signal(signal.SIGTERM)
            for worker in self.workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            if self.ui is not None:
                try:
                    self.ui.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.ui.kill()
            self.stop_server()
        report.elapsed = time.monotonic() - began
        return report

    def stop_scheduling(self) -> None:
        """Replace every worker by one without the schedule, each stopped gracefully, so that
        the jobs can run out."""
        self.scheduling = False
        running = self.live_workers()
        for worker in running:
            worker.send_signal(signal.SIGTERM)
            self.start_worker()
        for worker in running:
            worker.wait(timeout=30)

    def wait_until_every_job_ends(self) -> None:
        with jobqueue.SyncQueue(self.url) as queue:

            def ended() -> bool:
                self.keep_workers_up()
                stats = queue.get_queue_stats()
                return stats["pending"] == 0 and stats["running"] == 0

            with contextlib.suppress(AssertionError):  # what is left is reported as unfinished
                waiting.eventually_sync(
                    ended, timeout=self.settings.finish_within, interval=0.2, what="all jobs ended"
                )

    # --- the proof ----------------------------------------------------------------------------

    def executions(self) -> list[tuple[str, int, int, float, float | None, str | None]]:
        """(job, pid, attempt, start, end, how) of every execution, from the handlers' files."""
        found: list[tuple[str, int, int, float, float | None, str | None]] = []
        for path in self.logs.glob("*.log"):
            open_runs: dict[str, tuple[int, float]] = {}
            pid = int(path.stem)
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) != 5:
                    continue  # a line cut short by kill -9
                moment, _, job_id, attempt, event = parts
                if event == "start":
                    if job_id in open_runs:  # started twice in one process: record both
                        found.append(
                            (job_id, pid, open_runs[job_id][0], open_runs[job_id][1], None, None)
                        )
                    open_runs[job_id] = (int(attempt), float(moment))
                elif job_id in open_runs:
                    run_attempt, started = open_runs.pop(job_id)
                    found.append((job_id, pid, run_attempt, started, float(moment), event))
            found += [(job_id, pid, a, s, None, None) for job_id, (a, s) in open_runs.items()]
        return found

    def check(self) -> Report:
        report = Report(faults=dict(self.faults))
        report.ui_actions = self.ui_actions
        report.ui_unavailable = self.ui_unavailable
        report.stuck_paused = self.stuck_paused
        runs = self.executions()
        report.executions = len(runs)
        with self.admin() as conn:
            conn.execute(
                "CREATE TABLE chaos_executions (job_id uuid, pid integer, attempt integer,"
                " started_at double precision, ended_at double precision, how text,"
                " killed_at double precision)"
            )
            conn.execute("CREATE TABLE chaos_cancels (job_id uuid, attempts integer)")
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO chaos_executions VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [(*run, self.killed.get(run[1])) for run in runs],
                )
                cursor.executemany(
                    "INSERT INTO chaos_cancels VALUES (%s, %s)", list(self.cancelled.items())
                )
            report.retried = self.retried
            rows = conn.execute(
                "SELECT status, count(*), count(*) FILTER (WHERE coalesce(error, '') = '')"
                " FROM jobs GROUP BY status"
            ).fetchall()
            for status, count, without_reason in rows:
                report.jobs += count
                if status == "done":
                    report.done = count
                elif status == "failed":
                    report.failed = count
                    report.failed_without_reason = without_reason
                elif status == "cancelled":
                    report.cancelled = count
                else:
                    report.unfinished += count
            # A job the suite cancelled must end cancelled, and no other may. Poison and
            # always-failing work must fail; the rest must be done, unless its attempts were
            # used up by workers dying under it (a legitimate failure).
            report.wrong_outcome = count_of(
                conn,
                """
                SELECT count(*) FROM jobs
                WHERE CASE WHEN id IN (SELECT job_id FROM chaos_cancels)
                           THEN status <> 'cancelled'
                           WHEN status = 'cancelled' THEN true
                           WHEN payload->>'fail' = 'always' OR jsonb_typeof(payload) = 'array'
                           THEN status <> 'failed'
                           ELSE status = 'failed' AND error NOT LIKE 'stale lock%'
                                AND error NOT LIKE 'worker % stopped%'
                      END
                """,
            )
            report.unique_keys = count_of(
                conn, "SELECT count(DISTINCT unique_key) FROM jobs WHERE unique_key IS NOT NULL"
            )
            report.duplicate_holders = count_of(
                conn,
                "SELECT count(*) FROM (SELECT unique_key FROM jobs WHERE unique_key IS NOT NULL"
                " GROUP BY unique_key HAVING count(*) > 1) AS twice",
            )
            # The schedule's ticks: one job each (duplicate_holders above), and none missing
            # between the first and the last.
            row = conn.execute(
                "SELECT count(*), coalesce(extract(epoch FROM"
                " max(unique_period_start) - min(unique_period_start)), -1)"
                " FROM jobs WHERE unique_key LIKE %s",
                [SCHEDULE_KEY],
            ).fetchone()
            assert row is not None
            report.ticks = int(row[0])
            report.missed_ticks = int(row[1]) + 1 - report.ticks
            # A cancelled job never runs again: no execution of a later attempt than it had
            # made when it was cancelled.
            report.runs_after_cancel = count_of(
                conn,
                "SELECT count(*) FROM chaos_executions e"
                " JOIN chaos_cancels c USING (job_id) WHERE e.attempt > c.attempts",
            )
            # Each execution against the next one of the same job: it must have ended (or its
            # process died) before the next began.
            ordered = """
                SELECT job_id, how, killed_at,
                       coalesce(ended_at, killed_at) AS over,
                       lead(started_at) OVER (PARTITION BY job_id ORDER BY started_at) AS next
                FROM chaos_executions
            """
            report.overlaps = count_of(
                conn,
                f"SELECT count(*) FROM ({ordered}) e WHERE next IS NOT NULL"
                " AND (over IS NULL OR over > next)",
            )
            reasons = conn.execute(
                f"SELECT CASE WHEN how IN ('failed', 'cancelled', 'snoozed') THEN how"
                " WHEN killed_at IS NOT NULL THEN 'killed' ELSE 'none' END, count(*)"
                f" FROM ({ordered}) e WHERE next IS NOT NULL GROUP BY 1"
            ).fetchall()
            report.reruns = dict(reasons)
            report.unexplained_reruns = report.reruns.get("none", 0)
            # Each tenant's executions at once, swept over their starts and ends (an end
            # before a start at the same moment; no end and no kill: until the end of time),
            # against its limit.
            report.most_at_once = dict(
                conn.execute(
                    """
                    WITH spans AS (
                        SELECT jobs.concurrency_key AS key, e.started_at AS at, 1 AS change
                        FROM chaos_executions e JOIN jobs ON jobs.id = e.job_id
                        WHERE jobs.concurrency_key IS NOT NULL
                        UNION ALL
                        SELECT jobs.concurrency_key,
                               coalesce(e.ended_at, e.killed_at, 'infinity'), -1
                        FROM chaos_executions e JOIN jobs ON jobs.id = e.job_id
                        WHERE jobs.concurrency_key IS NOT NULL
                    )
                    SELECT key, max(at_once) FROM (
                        SELECT key, sum(change) OVER (PARTITION BY key ORDER BY at, change)
                                        AS at_once
                        FROM spans
                    ) AS swept
                    GROUP BY key
                    """
                ).fetchall()
            )
            report.over_limit = sum(
                most > (1 if key == "tenant-0" else PER_TENANT)
                for key, most in report.most_at_once.items()
            )
            # Every action the UI confirmed is in the audit trail, complete.
            report.unaudited_actions = report.ui_actions - count_of(
                conn,
                "SELECT count(*) FROM job_audit"
                " WHERE detail NOT LIKE '%: under way' AND detail NOT LIKE '%cut short%'",
            )
            report.rescue_seconds = [
                row[0]
                for row in conn.execute(
                    f"SELECT next - killed_at FROM ({ordered}) e"
                    " WHERE how IS NULL AND killed_at IS NOT NULL AND next IS NOT NULL"
                ).fetchall()
            ]
        return report
