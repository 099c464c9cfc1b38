"""The ``jobqueue`` command, run as a real process against a real database."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import pathlib
import subprocess
import sys
import uuid
import zoneinfo

import pytest

import jobqueue

JOBQUEUE = str(pathlib.Path(sys.executable).with_name("jobqueue"))


def run(
    *args: str, database_url: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if database_url:
        env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [JOBQUEUE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"jobqueue {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def test_db_migrate_verify_and_print(empty_database_url: str) -> None:
    behind = run("db", "verify", database_url=empty_database_url, check=False)
    assert behind.returncode == 1
    assert "schema is behind" in behind.stderr
    printed = run("db", "migrate", "--print", database_url=empty_database_url)
    assert "CREATE TABLE jobs" in printed.stdout
    first = run("db", "migrate", database_url=empty_database_url)
    assert first.stdout.startswith("applied: 0001_jobs, 0002_")
    assert "[Migrate] Applying 0001_jobs" in first.stderr
    again = run("db", "migrate", "--database-url", empty_database_url)
    assert again.stdout.strip() == "schema is up to date"
    assert run("db", "migrate", "--print", database_url=empty_database_url).stdout.strip() == ""
    assert run("db", "verify", database_url=empty_database_url).returncode == 0


def test_migrate_print_needs_no_database() -> None:
    printed = run("db", "migrate", "--print")
    assert "-- 0001_jobs" in printed.stdout
    assert "-- 0002_" in printed.stdout


def test_job_lifecycle_from_the_shell(database_url: str) -> None:
    enqueued = run(
        "enqueue",
        "parseBook",
        "--payload",
        '{"bookId": 1, "filePath": "/books/a.epub"}',
        "--max-attempts",
        "2",
        database_url=database_url,
    )
    job_id = uuid.UUID(enqueued.stdout.strip())
    assert f"[Queue] Enqueued job {job_id} (type: parseBook)" in enqueued.stderr
    status = json.loads(run("status", str(job_id), "--json", database_url=database_url).stdout)
    assert status["status"] == "pending"
    assert status["payload"]["bookId"] == 1
    assert status["max_attempts"] == 2
    human = run("status", str(job_id), database_url=database_url).stdout
    assert "status: pending" in human
    failed = run("fail", str(job_id), "--error", "disk full", database_url=database_url)
    assert "is pending (attempt 1/2, retry at" in failed.stdout
    done = run("complete", str(job_id), "--result", '{"chapters": 15}', database_url=database_url)
    assert done.stdout.strip() == f"job {job_id} is done"
    stats = json.loads(run("stats", "--json", database_url=database_url).stdout)
    assert stats == {
        "pending": 0,
        "running": 0,
        "failed": 0,
        "done": 1,
        "cancelled": 0,
        "by_type": {
            "parseBook": {"pending": 0, "running": 0, "failed": 0, "done": 1, "cancelled": 0}
        },
    }
    table = run("stats", database_url=database_url).stdout.splitlines()
    assert table[0].split() == ["TYPE", "pending", "running", "failed", "done", "cancelled"]
    assert table[1].split() == ["parseBook", "0", "0", "0", "1", "0"]
    again = run("complete", str(job_id), database_url=database_url, check=False)
    assert again.returncode == 1
    assert again.stderr.strip().endswith("it is done (it has already finished)")


def test_enqueue_delayed_and_cleanup(database_url: str) -> None:
    run("enqueue", "embedBook", "--run-at", "2999-01-01T00:00:00Z", database_url=database_url)
    cleaned = run("cleanup-stale-locks", "--threshold", "5m", database_url=database_url)
    assert cleaned.stdout.strip() == "released 0 stale jobs"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "t", "--payload", "{not json"], "invalid JSON"),
        (["enqueue", "t", "--run-at", "2030-01-01T00:00:00"], "has no timezone"),
        (["enqueue", "t", "--max-attempts", "0"], "max_attempts must be between 1"),
        (["enqueue", ""], "job type must not be empty"),
        (["status", "nope"], "malformed job id 'nope'"),
        (["status", "00000000-0000-0000-0000-000000000000"], "no job with id"),
        (["fail", "00000000-0000-0000-0000-000000000000", "--error", "x"], "no job with id"),
        (["cleanup-stale-locks", "--threshold", "soon"], "invalid duration 'soon'"),
    ],
)
def test_user_mistakes_are_one_clear_line(database_url: str, args: list[str], message: str) -> None:
    done = run(*args, database_url=database_url, check=False)
    assert done.returncode in (1, 2)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_database_is_one_clear_line() -> None:
    done = run("stats", "--database-url", "postgresql://nobody@127.0.0.1:1/none", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("jobqueue: error: cannot reach the database:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_missing_database_url_is_one_clear_line() -> None:
    done = run("stats", check=False)
    assert done.returncode == 1
    assert "no database configured" in done.stderr
    assert "DATABASE_URL" in done.stderr


def test_log_level_before_or_after_the_command(database_url: str) -> None:
    loud = run("enqueue", "jobqueue.noop", database_url=database_url)
    assert "[Queue] Enqueued job" in loud.stderr
    for args in (
        ["--log-level", "warning", "enqueue", "jobqueue.noop"],
        ["enqueue", "jobqueue.noop", "--log-level", "warning"],
    ):
        quiet = run(*args, database_url=database_url)
        assert quiet.stderr == ""
        assert uuid.UUID(quiet.stdout.strip())


def test_a_bad_embedder_setting_is_one_clear_line(database_url: str) -> None:
    done = subprocess.run(
        [JOBQUEUE, "books", "similar", "whales"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DATABASE_URL": database_url, "JOBQUEUE_EMBEDDER": "nonsense"},
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "jobqueue: error: JOBQUEUE_EMBEDDER='nonsense':"
        " one of use, static, e5, minilm, or 'module:factory'"
    )


def test_jobs_ls_show_cancel_retry_delete(database_url: str) -> None:
    """Job control from a shell (issue 21), in the words and JSON a user reads."""
    ids = [
        run(
            "enqueue",
            "parseBook",
            "--payload",
            json.dumps({"bookId": n}),
            database_url=database_url,
        ).stdout.strip()
        for n in range(3)
    ]
    page = json.loads(run("jobs", "ls", "--limit", "2", "--json", database_url=database_url).stdout)
    assert [job["id"] for job in page["jobs"]] == [ids[2], ids[1]]
    assert page["next_after"] == ids[1]
    rest = run("jobs", "ls", "--after", ids[1], "--json", database_url=database_url).stdout
    assert [job["id"] for job in json.loads(rest)["jobs"]] == [ids[0]]
    table = run("jobs", "ls", "--payload", '{"bookId": 1}', database_url=database_url).stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "TYPE", "QUEUE", "STATUS"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == [ids[1]]

    cancelled = run("jobs", "cancel", ids[0], ids[1], database_url=database_url).stdout
    assert f"job {ids[0]} is cancelled" in cancelled
    assert cancelled.strip().endswith("cancelled 2 jobs")
    listed = run("jobs", "ls", "--status", "cancelled,failed", "--json", database_url=database_url)
    assert {job["id"] for job in json.loads(listed.stdout)["jobs"]} == {ids[0], ids[1]}
    shown = json.loads(run("jobs", "show", ids[0], "--json", database_url=database_url).stdout)
    assert shown["status"] == "cancelled"
    assert shown["cancel_requested_at"] is not None

    retried = run("jobs", "retry", "--status", "cancelled", "--json", database_url=database_url)
    assert sorted(job["id"] for job in json.loads(retried.stdout)) == sorted(ids[:2])
    run("complete", ids[2], database_url=database_url)
    deleted = run("jobs", "delete", "--all", "--json", database_url=database_url)
    assert json.loads(deleted.stdout) == {"deleted": 1}

    refused = run("jobs", "cancel", database_url=database_url, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "jobqueue: error: jobs cancel needs job ids, a filter (--status, --type, ...) or --all"
    )
    bad = run("jobs", "ls", "--status", "finished", database_url=database_url, check=False)
    assert bad.returncode == 1
    assert "unknown status 'finished'" in bad.stderr


def test_queues_pause_resume_and_list(database_url: str) -> None:
    paused = run("queues", "pause", "books", database_url=database_url).stdout
    assert paused.startswith("queue books paused since ")
    listed = json.loads(run("queues", "paused", "--json", database_url=database_url).stdout)
    assert list(listed) == ["books"]
    assert run("queues", "resume", "books", database_url=database_url).stdout == (
        "queue books resumed\n"
    )
    again = run("queues", "resume", "books", "--json", database_url=database_url).stdout
    assert json.loads(again) == {"queue": "books", "resumed": False}
    assert run("queues", "paused", database_url=database_url).stdout == ""


def test_limits_set_ls_and_rm(database_url: str) -> None:
    shown = run("limits", "set", "api", "2", "--per-key", database_url=database_url).stdout
    assert shown.splitlines()[1].split()[:6] == ["api", "key", "every", "key", "2", "-"]
    rated = run(
        "limits", "rate", "api", "10", "--per", "60", "--per-key", database_url=database_url
    )
    assert rated.stdout.splitlines()[1].split()[4:7] == ["2", "10/60s", "burst"]
    run("limits", "set", "api", "5", "--key", "tenant-a", database_url=database_url)
    run("limits", "set", "api", "none", "--type", "ping", database_url=database_url)
    listed = json.loads(run("limits", "ls", "--json", database_url=database_url).stdout)
    assert [(lim["scope"], lim["name"], lim["concurrency"], lim["rate"]) for lim in listed] == [
        ("key", "", 2, 10),
        ("key", "tenant-a", 5, None),
        ("type", "ping", None, None),
    ]
    run(
        "enqueue", "t", "--queue", "api", "--concurrency-key", "tenant-a", database_url=database_url
    )
    assert run("limits", "rm", "api", "--key", "tenant-a", database_url=database_url).stdout == (
        "limit removed\n"
    )
    missing = run(
        "limits", "rm", "api", "--key", "tenant-a", database_url=database_url, check=False
    )
    assert missing.returncode != 0
    assert "no such limit" in missing.stderr


def test_schedules_ls_shows_the_next_run_and_delete_forgets_one(database_url: str) -> None:
    async def declare() -> None:
        async with jobqueue.Queue(database_url) as queue:
            await queue.declare_schedules(
                [
                    jobqueue.Schedule(
                        "nightly", "makeReport", cron="0 2 * * *", timezone="Europe/Berlin"
                    ),
                    jobqueue.Schedule("pulse", "ping", every=300, queue="ops"),
                ]
            )

    asyncio.run(declare())
    table = run("schedules", "ls", database_url=database_url).stdout.splitlines()
    assert table[0].split() == ["NAME", "QUEUE", "TYPE", "TIMING", "NEXT", "RUN", "LAST", "RUN"]
    assert table[1].startswith("nightly  default  makeReport  0 2 * * * (Europe/Berlin)  ")
    assert table[2].startswith("pulse    ops      ping        every 300s")
    listed = json.loads(run("schedules", "ls", "--json", database_url=database_url).stdout)
    nightly = datetime.datetime.fromisoformat(listed[0]["next_run_at"])
    assert nightly.astimezone(zoneinfo.ZoneInfo("Europe/Berlin")).time() == datetime.time(2)
    assert listed[0]["last_run_at"] is None
    only_ops = json.loads(
        run("schedules", "ls", "--queue", "ops", "--json", database_url=database_url).stdout
    )
    assert [state["name"] for state in only_ops] == ["pulse"]
    assert run("schedules", "delete", "pulse", database_url=database_url).stdout == (
        "schedule pulse deleted\n"
    )
    again = run("schedules", "delete", "pulse", database_url=database_url, check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == "jobqueue: error: no schedule named 'pulse'"
