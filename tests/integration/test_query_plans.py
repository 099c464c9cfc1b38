"""The hot queries' plans: each reads the jobs table through the index meant for it, never
a full scan, so a table of many finished or delayed jobs does not slow the queue down. A
dropped or changed index, or a query rewritten past its index, fails here."""

from __future__ import annotations

import collections.abc
import datetime
import re
import typing
import uuid

import psycopg
import pytest

import jobqueue
from jobqueue import checks, sql

Plan = dict[str, typing.Any]
SOME_IDS = [uuid.uuid4() for _ in range(3)]
CLAIM = {
    "queue": "default",
    "types": None,
    "limit": 32,
    "worker_id": "w",
    "now": None,
}


def control(**job_filter: typing.Any) -> Plan:
    """The parameters of a job-control query (list, cancel, retry, delete) for a filter."""
    params = checks.check_filter(jobqueue.JobFilter(**job_filter))
    params.update(after=None, limit=100, now=None, reason="cancelled")
    return params


@pytest.fixture
async def filled(
    conn: psycopg.AsyncConnection[typing.Any],
) -> psycopg.AsyncConnection[typing.Any]:
    """20,000 finished jobs, 5,000 delayed ones, a few ready and running: the shape of a
    queue that has run a while, planned with fresh statistics."""
    await conn.execute(
        """
        INSERT INTO jobs (type, status, queue, run_at, updated_at)
        SELECT 'a', CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'done' END, 'default',
               now() - interval '2 days', now() - interval '2 days'
        FROM generate_series(1, 20000) AS n;
        INSERT INTO jobs (type, queue, run_at)
        SELECT 'a', 'default', now() + make_interval(secs => n) FROM generate_series(1, 5000) n;
        INSERT INTO jobs (type, queue) SELECT 'a', 'default' FROM generate_series(1, 50);
        INSERT INTO jobs (type, status, queue, locked_by, locked_at, heartbeat_at)
        SELECT 'a', 'running', 'default', 'w', now(), now() FROM generate_series(1, 20);
        ANALYZE jobs;
        """
    )
    return conn


def nodes(plan: Plan) -> collections.abc.Iterator[Plan]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def plan_of(conn: psycopg.AsyncConnection[typing.Any], name: str, params: Plan) -> Plan:
    cursor = await conn.execute(f"EXPLAIN (FORMAT JSON) {sql.query(name)}", params)
    row = await cursor.fetchone()
    assert row is not None
    found: Plan = row[0][0]["Plan"]
    return found


@pytest.mark.parametrize(
    ("name", "params", "index"),
    [
        ("job_claim", CLAIM, "jobs_ready_idx"),
        ("job_next_run_at", {"queue": "default", "types": None}, "jobs_ready_idx"),
        (
            "job_complete_many",
            {"ids": SOME_IDS, "results": [None] * 3, "worker_id": "w", "now": None},
            "jobs_pkey",
        ),
        ("job_heartbeat", {"ids": SOME_IDS, "worker_id": "w", "now": None}, "jobs_pkey"),
        ("job_get", {"id": SOME_IDS[0]}, "jobs_pkey"),
        (
            "job_rescue_stale",
            {"queue": "default", "threshold": 300, "now": None},
            "jobs_running_idx",
        ),
        (
            "job_prune_finished",
            {
                "older_than": 86_400,
                "queue": None,
                "batch_size": 1000,
                "now": None,
                "statuses": ["done", "failed"],
            },
            "jobs_finished_idx",
        ),
        ("job_running_by_worker", {"queue": "default"}, "jobs_running_idx"),
        # Job control: a page of everything newest first walks the primary key; the failed
        # and cancelled jobs have an index of their own; one job is found by its id.
        ("job_list_newest", control(), "jobs_pkey"),
        ("job_list_oldest", control(types=["a"]), "jobs_pkey"),
        ("job_list_newest", control(statuses=["failed"]), "jobs_failed_idx"),
        ("job_retry", control(statuses=["failed", "cancelled"]), "jobs_failed_idx"),
        ("job_cancel", control(ids=SOME_IDS[:1]), "jobs_pkey"),
        ("job_delete", control(statuses=["done"]), "jobs_pkey"),
        # A unique key's holder is found through the unique index, not by a scan.
        (
            "job_insert_many_unique",
            {
                "ids": SOME_IDS[:1],
                "types": ["a"],
                "payloads": [None],
                "run_ats": [None],
                "max_attempts": [None],
                "queues": ["default"],
                "priorities": [0],
                "unique_keys": ["k"],
                "unique_fors": [None],
                "concurrency_keys": [None],
                "now": None,
                "wake_up": "producer",
            },
            "jobs_unique_idx",
        ),
        # What the web UI shows: counting a filter before an action stops at a limit and
        # reads through the filter's index; busy slots read running rows only.
        ("job_count_matching", control(statuses=["failed"]), "jobs_failed_idx"),
        ("job_count_matching", control(ids=SOME_IDS), "jobs_pkey"),
        ("worker_list", {"queue": None, "stale_after": 300, "now": None}, "jobs_running_idx"),
        # The backlog oldest first reads the pending jobs' index, not the primary key.
        (
            "job_list_waiting_oldest",
            control(statuses=["pending"], queue="default"),
            "jobs_ready_idx",
        ),
        (
            "queue_depth_measure",
            {"queue": "default", "due_within": 60, "now": None},
            "jobs_ready_idx",
        ),
    ],
)
async def test_a_hot_query_uses_its_index(
    filled: psycopg.AsyncConnection[typing.Any],
    name: str,
    params: Plan,
    index: str,
) -> None:
    plan = await plan_of(filled, name, params)
    on_jobs = [node for node in nodes(plan) if node.get("Relation Name") == "jobs"]
    assert on_jobs, f"{name} does not read jobs?"
    scans = {node["Node Type"] for node in on_jobs}
    assert "Seq Scan" not in scans, f"{name} scans the whole jobs table: {plan}"
    # A bitmap scan names its index on a child node of its own, without the relation.
    indexes = {node.get("Index Name") for node in nodes(plan)}
    assert index in indexes, (name, plan)


async def test_the_claim_updates_the_rows_it_locked_by_ctid(
    filled: psycopg.AsyncConnection[typing.Any],
) -> None:
    plan = await plan_of(filled, "job_claim", CLAIM)
    reads = [node["Node Type"] for node in nodes(plan) if node.get("Relation Name") == "jobs"]
    reads.remove("ModifyTable")  # the update itself
    assert sorted(reads) == ["Index Scan", "Tid Scan"], plan  # no primary-key lookup a job


async def test_a_schedules_tick_insert_reads_no_jobs_but_its_conflicts(
    filled: psycopg.AsyncConnection[typing.Any],
) -> None:
    """A tick enqueued before is found by the unique indexes as the row goes in, and the
    statement reads nothing else of jobs; the schedules' own statements never touch jobs."""
    tick = {
        "ids": SOME_IDS[:1],
        "types": ["a"],
        "payloads": [None],
        "ticks": [None],
        "max_attempts": [None],
        "queues": ["default"],
        "priorities": [0],
        "unique_keys": ["schedule:s@2030-01-01T00:00:00Z"],
    }
    plan = await plan_of(filled, "schedule_ticks_insert", tick)
    on_jobs = [node for node in nodes(plan) if node.get("Relation Name") == "jobs"]
    assert [node["Node Type"] for node in on_jobs] == ["ModifyTable"], plan
    # Without a conflict target every unique index is an arbiter: jobs_unique_idx finds the
    # tick's key, the primary key the id; no other read.
    assert on_jobs[0]["Conflict Resolution"] == "NOTHING", on_jobs[0]
    for name, params in [
        ("schedule_due_lock", {"names": ["s"], "now": None, "ahead": 0}),
        ("schedule_next_run", {"names": ["s"], "now": None}),
    ]:
        plan = await plan_of(filled, name, params)
        assert {node.get("Relation Name") for node in nodes(plan)} <= {"job_schedules", None}


async def test_the_oldest_ready_job_is_a_skip_scan_of_the_ready_index(
    filled: psycopg.AsyncConnection[typing.Any],
) -> None:
    """jobs_oldest_ready (migration 0008), which the queues page calls for every queue: its
    body, planned as the function runs it, probes jobs_ready_idx and scans nothing."""
    await filled.execute(
        "INSERT INTO jobs (type, queue, priority) SELECT 'a', 'default', n % 4"
        " FROM generate_series(1, 2000) AS n; ANALYZE jobs"
    )
    cursor = await filled.execute("SELECT prosrc FROM pg_proc WHERE proname = 'jobs_oldest_ready'")
    row = await cursor.fetchone()
    assert row is not None
    body = re.sub(r"\bqueue_name\b", "$1", row[0])
    body = re.sub(r"<= at\b", "<= $2", body)
    await filled.execute(f"PREPARE oldest (text, timestamptz) AS {body}")
    cursor = await filled.execute("EXPLAIN (FORMAT JSON) EXECUTE oldest ('default', now())")
    row = await cursor.fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    on_jobs = [node for node in nodes(plan) if node.get("Relation Name") == "jobs"]
    assert len(on_jobs) >= 2, plan  # the priorities present, and each one's head
    assert {node["Node Type"] for node in on_jobs} <= {"Index Scan", "Index Only Scan"}, plan
    assert {node["Index Name"] for node in on_jobs} == {"jobs_ready_idx"}, plan


@pytest.mark.parametrize(
    ("name", "bounds"),
    [
        ("job_list_newest", {"created_after": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}),
        ("job_list_oldest", {"created_before": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}),
        (
            "job_count_matching",
            {"created_before": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},
        ),
        ("job_delete", {"created_before": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}),
    ],
)
async def test_a_time_filter_reads_a_range_of_the_primary_key(
    filled: psycopg.AsyncConnection[typing.Any], name: str, bounds: dict[str, typing.Any]
) -> None:
    """Ids carry their creation time, so a filter on it bounds the primary key's scan (an
    index condition on id), not a scan of every job filtered row by row."""
    plan = await plan_of(filled, name, control(**bounds))
    scans = [node for node in nodes(plan) if node.get("Index Name") == "jobs_pkey"]
    assert scans, plan
    assert any(
        "id >" in node.get("Index Cond", "") or "id <" in node.get("Index Cond", "")
        for node in scans
    ), plan


async def test_jobs_addressed_by_id_are_read_by_id_whatever_the_statistics_say(
    conn: psycopg.AsyncConnection[typing.Any],
) -> None:
    """Heartbeats and releases name their jobs: they read them through the primary key
    alone (completions too, but see job_complete_many for why it is written plainly).
    Statistics from when no job ran (a new table, analyzed while all were pending) make
    the running jobs' partial index look nearly empty, and a plan through it reads every
    entry it has gathered since the last vacuum: one for each job that ran."""
    await conn.execute("INSERT INTO jobs (type) SELECT 'a' FROM generate_series(1, 50000)")
    await conn.execute("ANALYZE jobs")
    await conn.execute(
        "UPDATE jobs SET status = 'running', locked_by = 'w', locked_at = now(),"
        " heartbeat_at = now() WHERE id IN (SELECT id FROM jobs LIMIT 5000)"
    )
    cursor = await conn.execute("SELECT id FROM jobs WHERE status = 'running' LIMIT 50")
    ids = [row[0] for row in await cursor.fetchall()]
    for name, params in [
        ("job_heartbeat", {"ids": ids, "worker_id": "w", "now": None}),
        (
            "job_release",
            {"ids": ids, "worker_id": "w", "now": None, "keep_attempt": False, "error": None},
        ),
    ]:
        plan = await plan_of(conn, name, params)
        indexes = {node.get("Index Name") for node in nodes(plan)} - {None}
        assert indexes == {"jobs_pkey"}, (name, plan)
