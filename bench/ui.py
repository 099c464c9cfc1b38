#!/usr/bin/env python3
"""The web UI's server time on a big table (issue 23): every page and API call of
``jobqueue_ui`` against ``--jobs`` (default 10,000,000) jobs, read from the
``Server-Timing: app;dur=<ms>`` header the app puts on every answer (the handler's time,
database included). The goal: at most 100 ms each.

Setup, in a scratch database migrated as ``jobqueue db migrate`` does, filled server-side by
``INSERT ... SELECT ... FROM generate_series`` in chunks of ``--chunk`` rows (the statistics
triggers stay on; chunks keep their transition tables bounded):

* over the last 30 days, oldest first, ids time-ordered as the enqueue calls make them
  (UUID version 7, the id's time = ``created_at``), so newest first is the primary key read
  backwards, as in use;
* 4 queues and 6 types (``books``: ``book.parse``, ``book.embed``, ``book.summarize``, 40%;
  ``media``: ``media.convert``, 25%; ``mail``: ``mail.send``, 20%; ``default``:
  ``report.build``, 15%); payloads ``{"bookId": n, "user": "user-k"}``, 20 jobs a book (in a
  row), 200 users;
* ~95% done, 2% failed (half ``TimeoutError``, ``KeyError``, ``ConnectionResetError``, and 1
  in 100 a rare ``not an EPUB: META-INF/container.xml`` error), 1% cancelled; a backlog of
  ~1.8% pending among the newest 2.5% (18 hours), priorities 0, 5 and 10, plus ~0.05%
  delayed (created in the last week, due in the next); a few hundred running, held by eight
  live workers (two a queue, in ``job_workers``);
* 300 audit entries, 8 schedules, one done job with two follow-ups;

then ``VACUUM (ANALYZE)``. ``--keep`` keeps that database (``jobqueue_bench_ui_<jobs>``)
and reuses it on the next run: with ``$DATABASE_URL`` only, the embedded server is deleted
at the end.

Measured: the app in this process (``jobqueue_ui.app.UI`` on an open ``jobqueue.Queue``,
as ``jobqueue ui`` runs it), called through ``httpx.ASGITransport`` with an admin Bearer
token. A warm-up round calls everything once, then ``--repeat`` rounds each call every
page and API call once, in turns (so that the statements' plan caches see the mix a UI
sees). The "edge" calls, filters no index narrows (payload containment of a rare value, a
time range far back, an error text without a status), are timed in the first
``--edge-repeat`` rounds only: they can take up to the UI's query timeout (5 s, answered
503). Two of the actions are applied, on 5 jobs only (retry, then cancel them again);
every other action stops at its confirmation page.

Run from the repository root::

    .venv/bin/python bench/ui.py                           # 10,000,000 jobs, ~7 min
    .venv/bin/python bench/ui.py --jobs 1000000 --repeat 5 --json
    DATABASE_URL=postgresql://... .venv/bin/python bench/ui.py --keep   # fill once
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import html
import json
import os
import re
import statistics
import sys
import time
import typing
import uuid

import httpx

import _common
import jobqueue
from jobqueue import db, migrations
from jobqueue_ui import app as ui_app

LIMIT_MS: typing.Final = 100.0
ADMIN_TOKEN: typing.Final = "bench-admin-token-0123456789"
QUEUES: typing.Final = ("books", "media", "mail", "default")
WORKERS_PER_QUEUE: typing.Final = 2
WORKER_CONCURRENCY: typing.Final = 50
JOBS_PER_BOOK: typing.Final = 20
AUDIT_ENTRIES: typing.Final = 300
SERVER_SETTINGS: typing.Final = ("server_version", "shared_buffers", "work_mem")

# One chunk of the jobs, rows %(first)s to %(last)s of %(jobs)s (row g is made
# (jobs - g) / jobs * 30 days before %(now)s). ``draw`` (0-9999) picks the status, ``pick``
# the queue and type (its last two digits) and the user; both come from md5(g), so a
# refill is the same table.
INSERT_JOBS: typing.Final = f"""
INSERT INTO jobs (id, type, queue, status, payload, result, attempts, max_attempts, priority,
                  run_at, locked_at, locked_by, heartbeat_at, error, created_at, updated_at)
SELECT {_common.time_ordered_id("d.made", "r.hash")},
       kind.type, kind.queue, state.status,
       jsonb_build_object('bookId', g / {JOBS_PER_BOOK}, 'user', 'user-' || mod(d.pick / 100, 200)),
       CASE WHEN state.status = 'done' THEN '{{"ok": true}}'::jsonb END,
       CASE state.status WHEN 'pending' THEN 0 WHEN 'failed' THEN 3 ELSE 1 END,
       3,
       CASE WHEN state.status <> 'pending' THEN 0 WHEN mod(d.draw, 10) = 0 THEN 10
            WHEN mod(d.draw, 10) = 1 THEN 5 ELSE 0 END,
       CASE WHEN state.delayed THEN %(now)s + make_interval(secs => mod(g * 7919, 604800))
            ELSE d.made END,
       CASE state.status WHEN 'running' THEN %(now)s - interval '1 minute'
            WHEN 'pending' THEN NULL ELSE d.made + interval '1 second' END,
       CASE WHEN state.status = 'running'
            THEN kind.queue || '-worker-' || (1 + mod(d.draw, {WORKERS_PER_QUEUE})) END,
       CASE WHEN state.status = 'running' THEN %(now)s END,
       CASE state.status
            WHEN 'cancelled' THEN CASE WHEN mod(d.draw, 2) = 0 THEN 'cancelled'
                                       ELSE 'cancelled by alice' END
            WHEN 'failed' THEN CASE
                 WHEN d.draw < 9800 THEN 'TimeoutError: the embedder did not answer within 30 s'
                 WHEN d.draw < 9860 THEN 'KeyError: ''bookId'''
                 WHEN d.draw < 9898
                      THEN 'ConnectionResetError: [Errno 104] Connection reset by peer'
                 ELSE 'ValueError: not an EPUB: META-INF/container.xml is missing (book '
                      || g / {JOBS_PER_BOOK} || ')' END END,
       d.made,
       CASE state.status WHEN 'pending' THEN d.made
            WHEN 'running' THEN %(now)s - interval '1 minute'
            ELSE d.made + interval '2 seconds' END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT md5(g::text)) AS r (hash),
     LATERAL (SELECT mod(('x' || substr(r.hash, 19, 7))::bit(28)::int, 10000),
                     ('x' || substr(r.hash, 26, 7))::bit(28)::int,
                     %(now)s - interval '30 days' * ((%(jobs)s - g)::float8 / %(jobs)s),
                     %(jobs)s - g < %(jobs)s / 40,
                     %(jobs)s - g < %(jobs)s * 7 / 30) AS d (draw, pick, made, backlog, recent),
     LATERAL (SELECT CASE WHEN d.backlog AND d.draw < 7200 THEN 'pending'
                          WHEN d.backlog AND d.draw < 7212 THEN 'running'
                          WHEN d.recent AND d.draw >= 9980 THEN 'pending'
                          WHEN d.draw >= 9700 AND d.draw < 9900 THEN 'failed'
                          WHEN d.draw >= 9600 AND d.draw < 9700 THEN 'cancelled'
                          ELSE 'done' END,
                     NOT (d.backlog AND d.draw < 7212) AND d.recent AND d.draw >= 9980)
             AS state (status, delayed),
     LATERAL (SELECT CASE WHEN mod(d.pick, 100) < 40 THEN 'books'
                          WHEN mod(d.pick, 100) < 65 THEN 'media'
                          WHEN mod(d.pick, 100) < 85 THEN 'mail' ELSE 'default' END,
                     CASE WHEN mod(d.pick, 100) < 14 THEN 'book.parse'
                          WHEN mod(d.pick, 100) < 28 THEN 'book.embed'
                          WHEN mod(d.pick, 100) < 40 THEN 'book.summarize'
                          WHEN mod(d.pick, 100) < 65 THEN 'media.convert'
                          WHEN mod(d.pick, 100) < 85 THEN 'mail.send'
                          ELSE 'report.build' END) AS kind (queue, type)
"""
# What the fill made, so that a kept database is reused only when complete.
FILL_TABLE: typing.Final = """
CREATE TABLE IF NOT EXISTS bench_ui_fill (
    jobs bigint NOT NULL, made_at timestamptz NOT NULL, insert_seconds float8 NOT NULL,
    vacuum_seconds float8 NOT NULL, job_with_follow_ups uuid NOT NULL)
"""
# A done book.parse job half way down, and the next two jobs of its book as its follow-ups.
FOLLOW_UPS: typing.Final = """
WITH parent AS (
    SELECT id, payload FROM jobs
    WHERE id < %(half)s AND status = 'done' AND type = 'book.parse'
    ORDER BY id DESC LIMIT 1
), children AS (
    SELECT array_agg(id) AS ids
    FROM (SELECT jobs.id FROM jobs, parent
          WHERE jobs.id > parent.id AND jobs.payload @> parent.payload - 'user'
          ORDER BY jobs.id LIMIT 2) AS next_two
)
UPDATE jobs SET follow_ups = children.ids FROM parent, children
WHERE jobs.id = parent.id
RETURNING jobs.id
"""
TIMING: typing.Final = re.compile(r"\bapp;dur=([0-9.]+)")


def id_at(moment: datetime.datetime) -> uuid.UUID:
    """The smallest time-ordered job id of ``moment``'s millisecond: a keyset cursor there."""
    millis = int(moment.timestamp() * 1000)
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | 0x2 << 62)


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


# --- setup ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Fill:
    jobs: int
    made_at: datetime.datetime
    insert_seconds: float
    vacuum_seconds: float
    job_with_follow_ups: uuid.UUID
    reused: bool = False


async def existing_fill(conn: _common.Connection, jobs: int) -> Fill | None:
    """The fill a kept database holds, if it was completed for ``jobs`` jobs."""
    cursor = await conn.execute("SELECT to_regclass('bench_ui_fill') IS NOT NULL")
    row = await cursor.fetchone()
    if not (row and row[0]):
        return None
    cursor = await conn.execute("SELECT * FROM bench_ui_fill WHERE jobs = %s", [jobs])
    found = await cursor.fetchone()
    if found is None:
        return None
    jobs, made_at, insert_seconds, vacuum_seconds, job_id = found
    return Fill(jobs, made_at, insert_seconds, vacuum_seconds, job_id, reused=True)


async def fill(conn: _common.Connection, queue: jobqueue.Queue, args: argparse.Namespace) -> Fill:
    """The big table and the rest the UI shows, then ``VACUUM (ANALYZE)``."""
    await conn.execute(
        "TRUNCATE jobs, job_audit, job_workers, job_schedules, job_queues RESTART IDENTITY"
    )
    cursor = await conn.execute("SELECT now()")
    row = await cursor.fetchone()
    assert row is not None
    now: datetime.datetime = row[0]
    began = time.perf_counter()
    for first in range(1, args.jobs + 1, args.chunk):
        last = min(args.jobs, first + args.chunk - 1)
        started = time.perf_counter()
        params = {"first": first, "last": last, "jobs": args.jobs, "now": now}
        await conn.execute(INSERT_JOBS, params)
        print(
            f"filled {last:,}/{args.jobs:,} jobs ({time.perf_counter() - started:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    cursor = await conn.execute(FOLLOW_UPS, {"half": id_at(now - datetime.timedelta(days=15))})
    parent = await cursor.fetchone()
    assert parent is not None, "no done book.parse job half way down"
    for number in range(AUDIT_ENTRIES):
        queue_name = QUEUES[number % len(QUEUES)]
        action = ("retry", "cancel", "delete", "pause")[number % 4]
        job_filter = jobqueue.JobFilter(queue=queue_name, statuses=["failed"])
        await queue.record_action(
            actor=("alice", "bob", "carol")[number % 3],
            role="admin",
            action=action,
            queue=queue_name,
            job_filter=None if action == "pause" else job_filter,
            jobs=0 if action == "pause" else number * 7 % 500,
            detail=f"every failed job matching queue={queue_name}",
            now=now - datetime.timedelta(days=30) * (1 - number / AUDIT_ENTRIES),
        )
    await queue.declare_schedules(
        jobqueue.Schedule(
            f"{queue_name}-{kind}",
            type="report.build",
            queue=queue_name,
            cron="0 3 * * *" if kind == "nightly" else None,
            every=None if kind == "nightly" else 600.0,
            payload={"report": kind},
        )
        for queue_name in QUEUES
        for kind in ("nightly", "every-10-min")
    )
    inserted = time.perf_counter() - began
    print(f"inserted in {inserted:.0f} s; VACUUM (ANALYZE) ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    await conn.execute("VACUUM (ANALYZE)")
    vacuumed = time.perf_counter() - began
    made = Fill(args.jobs, now, inserted, vacuumed, parent[0])
    await conn.execute(FILL_TABLE)
    await conn.execute(
        "INSERT INTO bench_ui_fill VALUES (%s, %s, %s, %s, %s)",
        [made.jobs, made.made_at, made.insert_seconds, made.vacuum_seconds, parent[0]],
    )
    return made


async def announce_workers(queue: jobqueue.Queue) -> None:
    """The workers holding the running jobs, seen now (again, on a kept database)."""
    for queue_name in QUEUES:
        for number in range(1, WORKERS_PER_QUEUE + 1):
            await queue.announce_worker(
                f"{queue_name}-worker-{number}",
                queue=queue_name,
                concurrency=WORKER_CONCURRENCY,
                started_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
                forget_after=3600.0,
            )


# --- the calls --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call:
    """One request. ``edge``: a filter no index narrows, expected slow, timed less often."""

    name: str
    path: str
    form: dict[str, str | list[str]] | None = None
    edge: bool = False


@dataclasses.dataclass
class Timings:
    call: Call
    samples_ms: list[float] = dataclasses.field(default_factory=list)
    statuses: set[int] = dataclasses.field(default_factory=set)
    rows: str = ""

    def as_json(self) -> dict[str, typing.Any]:
        samples = self.samples_ms
        return {
            "name": self.call.name,
            "request": ("POST " if self.call.form else "GET ") + self.call.path,
            "edge": self.call.edge,
            "calls": len(samples),
            "p50_ms": statistics.median(samples),
            "p95_ms": _common.percentile(samples, 0.95),
            "max_ms": max(samples),
            "statuses": sorted(self.statuses),
            "rows": self.rows,
        }


def rows_of(response: httpx.Response) -> str:
    """What an answer holds: jobs on the page, a count, or entries."""
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        for key in ("jobs", "queues", "workers", "schedules", "entries"):
            if isinstance(body, dict) and key in body:
                return str(len(body[key]))
        if isinstance(body, dict) and "count" in body:
            return f"{body['count']:,}{'+' if body['at_least'] else ''}"
        return "1"
    counted = re.search(r'id="confirm-count">([^<]*)<', response.text)
    if counted:
        return counted[1]
    jobs = response.text.count('data-job="')
    return str(jobs) if jobs else ""


async def request(client: httpx.AsyncClient, call: Call) -> tuple[float, httpx.Response]:
    """The app's own time of one call (its Server-Timing), and the answer."""
    if call.form is None:
        response = await client.get(call.path)
    else:
        response = await client.post(call.path, data=call.form)
    found = TIMING.search(response.headers.get("server-timing", ""))
    assert found, f"{call.path}: no Server-Timing header"
    return float(found[1]), response


def path(base: str, **query: str) -> str:
    return f"{base}?{httpx.QueryParams(query)}" if query else base


async def make_calls(client: httpx.AsyncClient, made: Fill) -> list[Call]:
    """Every call, with what some of them take from an answer first: the CSRF token and the
    next-page link of a page, the API's ``next_after``, failed jobs to act on."""
    page = await client.get("/jobs")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    next_link = re.search(r'<a href="([^"]+)" id="next-page"', page.text)
    assert csrf, page.text[:2000]
    assert next_link, page.text[:2000]
    failed = (await client.get("/api/jobs", params={"queue": "mail", "status": "failed"})).json()
    failed_page = (await client.get("/api/jobs", params={"status": "failed"})).json()
    five = [job["id"] for job in failed["jobs"][:5]]
    now = made.made_at
    day = datetime.timedelta(days=1)
    old_book = json.dumps({"bookId": made.jobs // 10 // JOBS_PER_BOOK})
    recent_book = json.dumps({"bookId": (made.jobs - 1000) // JOBS_PER_BOOK})
    token = csrf[1]

    def form(action: str, **given: str | list[str]) -> dict[str, str | list[str]]:
        return {"csrf": token, "action": action, "return_to": "/jobs", **given}

    return [
        Call("page: queues", "/queues"),
        Call("page: jobs, newest", "/jobs"),
        Call("page: jobs, next page", html.unescape(next_link[1])),
        Call("page: jobs, half way down", path("/jobs", after=str(id_at(now - 15 * day)))),
        Call("page: failed", path("/jobs", status="failed")),
        Call("page: one queue's pending", path("/jobs", queue="books", status="pending")),
        Call(
            "page: one queue's pending, oldest",
            path("/jobs", queue="books", status="pending", order="oldest"),
        ),
        Call("page: one type", path("/jobs", type="media.convert")),
        Call("page: failed, error 'timeout'", path("/jobs", status="failed", error="timeout")),
        Call(
            "page: failed, rare error",
            path("/jobs", status="failed", error="container.xml"),
        ),
        Call("page: error 'timeout', any status", path("/jobs", error="timeout")),
        Call("page: payload of a user (0.5%)", path("/jobs", payload='{"user": "user-7"}')),
        Call("page: created in the last hour", path("/jobs", created_after=iso(now - day / 24))),
        Call("page: job with follow-ups", f"/jobs/{made.job_with_follow_ups}"),
        Call("page: a failed job", f"/jobs/{failed_page['jobs'][0]['id']}"),
        Call("page: schedules", "/schedules"),
        Call("page: audit", "/audit"),
        Call("api: queues", "/api/queues"),
        Call("api: workers", "/api/workers"),
        Call("api: jobs, a queue's failed", path("/api/jobs", queue="mail", status="failed")),
        Call(
            "api: jobs, failed, next page",
            path("/api/jobs", status="failed", after=failed_page["next_after"]),
        ),
        Call("api: job", f"/api/jobs/{made.job_with_follow_ups}"),
        Call("api: count, statistics", path("/api/jobs/count", queue="books", status="failed")),
        Call(
            "api: count, bounded (failed, timeout)",
            path("/api/jobs/count", status="failed", error="timeout"),
        ),
        Call(
            "api: count, bounded (a type, last day)",
            path("/api/jobs/count", type="book.parse", created_after=iso(now - day)),
        ),
        Call("api: schedules", "/api/schedules"),
        Call("api: audit", "/api/audit"),
        Call(
            "confirm: retry a queue's failed",
            "/actions/confirm",
            form("retry:matching", queue="books", status="failed"),
        ),
        Call(
            "confirm: retry failed, error 'timeout'",
            "/actions/confirm",
            form("retry:matching", status="failed", error="timeout"),
        ),
        Call(
            "confirm: delete done older than 20 days",
            "/actions/confirm",
            form("delete:matching", status="done", created_before=iso(now - 20 * day)),
        ),
        Call("confirm: cancel 5 selected", "/actions/confirm", form("cancel:selected", id=five)),
        Call("apply: retry 5 selected", "/actions/apply", form("retry:selected", id=five)),
        Call("apply: cancel those 5", "/actions/apply", form("cancel:selected", id=five)),
        Call("edge page: payload, a book of 20 jobs", path("/jobs", payload=old_book), edge=True),
        Call(
            "edge page: done, payload of a recent book",
            path("/jobs", status="done", payload=recent_book),
            edge=True,
        ),
        Call(
            "edge page: a day 4 weeks ago",
            path("/jobs", created_after=iso(now - 28 * day), created_before=iso(now - 27 * day)),
            edge=True,
        ),
        Call("edge page: rare error, any status", path("/jobs", error="container.xml"), edge=True),
        Call(
            "edge api: count, payload of a book",
            path("/api/jobs/count", payload=old_book),
            edge=True,
        ),
    ]


# --- the run ----------------------------------------------------------------------------


async def run(args: argparse.Namespace, server_url: str) -> dict[str, typing.Any]:
    load_before = os.getloadavg()
    async with _common.scratch_database(
        server_url, f"jobqueue_bench_ui_{args.jobs}", keep=args.keep
    ) as url:
        conn = await _common.Connection.connect(url, autocommit=True)
        async with conn, jobqueue.Queue(url) as queue:
            await migrations.migrate(conn)
            made = await existing_fill(conn, args.jobs) if args.keep else None
            if made is None:
                made = await fill(conn, queue, args)
            await announce_workers(queue)
            facts = await _common.server_settings(conn, SERVER_SETTINGS)
            cursor = await conn.execute("SELECT pg_size_pretty(pg_total_relation_size('jobs'))")
            size = await cursor.fetchone()
            assert size is not None
            facts["jobs table"] = str(size[0])
            stats = await queue.get_queue_stats()
            ui = ui_app.UI(
                ui_app.Config(
                    database_url=None,
                    host="127.0.0.1",
                    admin_token=ADMIN_TOKEN,
                    viewer_token=None,
                )
            )
            ui.queue = queue
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=ui.app()),
                base_url="http://ui.bench",
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60.0,
            ) as client:
                calls = await make_calls(client, made)
                timings = [Timings(call) for call in calls]
                for turn in range(args.repeat + 1):  # turn 0: the warm-up
                    began = time.perf_counter()
                    for timing in timings:
                        if timing.call.edge and turn > args.edge_repeat:
                            continue
                        elapsed, response = await request(client, timing.call)
                        if turn:
                            timing.samples_ms.append(elapsed)
                            timing.statuses.add(response.status_code)
                            timing.rows = rows_of(response)
                    print(
                        f"round {turn}/{args.repeat}: {time.perf_counter() - began:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    return {
        "jobs": made.jobs,
        "stats": stats,
        "fill": {
            "reused": made.reused,
            "insert_seconds": made.insert_seconds,
            "vacuum_seconds": made.vacuum_seconds,
        },
        "server_facts": facts,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "results": [timing.as_json() for timing in timings],
    }


def verdict(result: dict[str, typing.Any]) -> str:
    """Which of the figures are over the limit."""
    if result["p50_ms"] > LIMIT_MS:
        return "OVER"
    if result["p95_ms"] > LIMIT_MS:
        return "p95 over"
    if result["max_ms"] > LIMIT_MS:
        return "max over"
    return ""


def report_json(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    for result in outcome["results"]:
        result["verdict"] = verdict(result)
    return json.dumps({"server": server, "limit_ms": LIMIT_MS, **outcome}, indent=2)


def report_table(args: argparse.Namespace, server: str, outcome: dict[str, typing.Any]) -> str:
    fill_facts = outcome["fill"]
    kept = " (kept from an earlier run)" if fill_facts["reused"] else ""
    facts = ", ".join(f"{name}={value}" for name, value in outcome["server_facts"].items())
    before, after = (
        " ".join(f"{load:.2f}" for load in outcome["load_average"][when])
        for when in ("before", "after")
    )
    lines = [
        f"web UI server time (Server-Timing app;dur) on {outcome['jobs']:,} jobs"
        f" {outcome['stats']}",
        f"server: {server}, {facts}; {os.cpu_count()} CPUs; load average {before} before,"
        f" {after} after",
        f"fill: inserted in {fill_facts['insert_seconds']:.0f} s, VACUUM (ANALYZE)"
        f" {fill_facts['vacuum_seconds']:.0f} s{kept}",
        f"{args.repeat} rounds after a warm-up, edge calls {args.edge_repeat}; limit"
        f" {LIMIT_MS:.0f} ms",
        "",
        f"{'call':<44} {'n':>3} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'HTTP':>8}"
        f" {'rows':>8}  over",
        "-" * 100,
    ]
    for result in outcome["results"]:
        statuses = ",".join(str(status) for status in result["statuses"])
        lines.append(
            f"{result['name']:<44} {result['calls']:>3} {result['p50_ms']:>9.1f}"
            f" {result['p95_ms']:>9.1f} {result['max_ms']:>9.1f} {statuses:>8}"
            f" {result['rows']:>8}  {verdict(result)}"
        )
    over = [result["name"] for result in outcome["results"] if verdict(result)]
    lines.append(f"\nover {LIMIT_MS:.0f} ms: {len(over)} of {len(outcome['results'])} calls")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=_common.int_between(10_000, 100_000_000), default=10_000_000)
    parser.add_argument(
        "--chunk",
        type=_common.int_between(1000, 10_000_000),
        default=1_000_000,
        help="jobs a fill statement",
    )
    parser.add_argument("--repeat", type=_common.int_between(1, 1000), default=20)
    parser.add_argument(
        "--edge-repeat",
        type=_common.int_between(1, 1000),
        default=3,
        help="rounds that time the edge calls",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the filled database and reuse it next time ($DATABASE_URL only)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.keep and not os.environ.get(db.DATABASE_URL_ENV):
        parser.error("--keep needs $DATABASE_URL: the embedded server is deleted at the end")
    return args


if __name__ == "__main__":
    sys.exit(_common.main(parse_args(), run, report_json, report_table))
