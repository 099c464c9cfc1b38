"""Real ``jobqueue worker`` processes: signals, crashes, probes, a database restart (S14)."""

from __future__ import annotations

import collections.abc
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import typing
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest
import waiting

import jobqueue
from jobqueue import embedded

JOBQUEUE = str(pathlib.Path(sys.executable).with_name("jobqueue"))
SUPPORT = str(pathlib.Path(__file__).parents[1] / "support")


class WorkerProcess:
    def __init__(self, database_url: str, log_path: pathlib.Path, *args: str, **env: str):
        self.log_path = log_path
        environment = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": SUPPORT, **env}
        imports = [] if "JOBQUEUE_IMPORTS" in env else ["--import", "jobqueue_test_handlers"]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [JOBQUEUE, "worker", *imports, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 20.0) -> str:
        return waiting.eventually_sync(
            lambda: text in self.output() and self.output(),
            timeout=timeout,
            what=f"worker output {text!r}",
        )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture
def start_worker(
    database_url: str, tmp_path: pathlib.Path
) -> collections.abc.Iterator[collections.abc.Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, url: str | None = None, **env: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        process = WorkerProcess(url or database_url, log, *args, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(timeout=10)


def job(database_url: str, job_id: uuid.UUID) -> jobqueue.Job:
    with jobqueue.SyncQueue(database_url) as queue:
        found = queue.get_job_status(job_id)
    assert found is not None
    return found


def wait_status(
    database_url: str, job_id: uuid.UUID, status: str, timeout: float = 20.0
) -> jobqueue.Job:
    with jobqueue.SyncQueue(database_url) as queue:

        def check() -> jobqueue.Job | None:
            found = queue.get_job_status(job_id)
            return found if found is not None and found.status == status else None

        return waiting.eventually_sync(check, timeout=timeout, what=f"job {status}")


def enqueue(database_url: str, job_type: str, payload: dict[str, typing.Any]) -> jobqueue.Job:
    with jobqueue.SyncQueue(database_url) as queue:
        return queue.enqueue_job(job_type, payload)


@pytest.mark.parametrize("job_type", ["test.hold", "test.hold_sync"])
def test_sigterm_mid_job_finishes_the_job_and_exits_0(
    database_url: str, tmp_path: pathlib.Path, start_worker: typing.Any, job_type: str
) -> None:
    release = tmp_path / "release"
    held = enqueue(database_url, job_type, {"release": str(release)})
    worker = start_worker("--worker-id", "worker-abc123")
    wait_status(database_url, held.id, "running")
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("[Worker] Waiting for 1 active jobs to complete...")
    assert worker.process.poll() is None, "exited before its job finished"
    release.touch()
    assert worker.wait() == 0
    assert job(database_url, held.id).status == "done"
    output = worker.output()
    lines = [
        "[Worker] Starting worker worker-abc123",
        f"[Queue] Dequeued job {held.id} (type: {job_type}) by worker-abc123",
        f"[Runner] Executing job {held.id} (type: {job_type})",
        "[Worker] Received SIGTERM, initiating graceful shutdown...",
        "[Worker] Waiting for 1 active jobs to complete...",
        f"[Runner] Job {held.id} completed in ",
        f"[Queue] Job {held.id} completed",
        "[Worker] Worker worker-abc123 stopped",
    ]
    positions = [output.index(line) for line in lines]
    assert positions == sorted(positions), output


@pytest.mark.parametrize("job_type", ["test.hold", "test.hold_sync"])
def test_grace_timeout_puts_running_jobs_back_to_pending(
    database_url: str, tmp_path: pathlib.Path, start_worker: typing.Any, job_type: str
) -> None:
    held = enqueue(database_url, job_type, {"release": str(tmp_path / "never")})
    worker = start_worker("--grace-timeout", "0.5")
    wait_status(database_url, held.id, "running")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    back = job(database_url, held.id)
    assert back.status == "pending"
    assert back.attempts == 0
    assert back.locked_by is None
    assert "Cancelling 1 jobs still running" in worker.output()


def test_a_second_signal_stops_at_once(
    database_url: str, tmp_path: pathlib.Path, start_worker: typing.Any
) -> None:
    held = enqueue(database_url, "test.hold", {"release": str(tmp_path / "never")})
    worker = start_worker("--grace-timeout", "600")
    wait_status(database_url, held.id, "running")
    worker.signal(signal.SIGINT)
    worker.wait_for_output("Waiting for 1 active jobs to complete...")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert "Received SIGTERM again, cancelling 1 active jobs" in worker.output()
    assert job(database_url, held.id).status == "pending"


def test_kill_9_then_cleanup_reruns_the_job_exactly_once_more(
    database_url: str, tmp_path: pathlib.Path, start_worker: typing.Any
) -> None:
    release, runs = tmp_path / "release", tmp_path / "runs.log"
    held = enqueue(database_url, "test.hold", {"release": str(release), "log": str(runs)})
    first = start_worker("--heartbeat-interval", "0.1")
    claimed = wait_status(database_url, held.id, "running")
    with jobqueue.SyncQueue(database_url) as queue:
        # Alive: the heartbeat keeps the job although its lock is older than the threshold.
        def lock_old_heartbeat_fresh() -> bool:
            current = queue.get_job_status(held.id)
            assert current is not None
            assert current.heartbeat_at is not None
            assert claimed.locked_at is not None
            return (current.heartbeat_at - claimed.locked_at).total_seconds() > 1.5

        waiting.eventually_sync(lock_old_heartbeat_fresh, what="heartbeats")
        assert queue.cleanup_stale_locks(1) == 0
        first.process.kill()
        first.wait()
        waiting.eventually_sync(lambda: queue.cleanup_stale_locks(1) == 1, what="stale")
    requeued = job(database_url, held.id)
    assert requeued.status == "pending"
    assert requeued.attempts == 1
    release.touch()
    second = start_worker("--burst")
    assert second.wait() == 0
    finished = job(database_url, held.id)
    assert finished.status == "done"
    assert finished.attempts == 2
    lines = runs.read_text().splitlines()
    assert len(lines) == 2
    assert {line.split()[1] for line in lines} == {str(first.process.pid), str(second.process.pid)}


def test_notify_pickup_in_a_process(
    database_url: str, tmp_path: pathlib.Path, start_worker: typing.Any
) -> None:
    worker = start_worker("--poll-interval", "600")
    worker.wait_for_output("[Worker] Listening for new jobs")
    for _ in range(3):  # the poll would come after 10 minutes: each pickup is a NOTIFY's
        queued = enqueue(database_url, "test.record", {})
        wait_status(database_url, queued.id, "done", timeout=10)


def test_probes_and_metrics(
    database_url: str, tmp_path: pathlib.Path, start_worker: typing.Any
) -> None:
    worker = start_worker("--metrics-port", "0", "--concurrency", "3")
    output = worker.wait_for_output("/readyz on port ")
    port = int(re.search(r"/readyz on port (\d+)", output).group(1))  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    assert get("/healthz") == (200, "ok\n")
    waiting.eventually_sync(lambda: get("/readyz") == (200, "ok\n"), what="ready")
    done = enqueue(database_url, "test.record", {})
    failed = enqueue(database_url, "test.fail", {})
    wait_status(database_url, done.id, "done")
    wait_status(database_url, failed.id, "pending")

    def scraped() -> str | None:
        # Both outcomes counted (a job's status is written a moment before its counter).
        status, body = get("/metrics")
        counted = 'outcome="retried"' in body and 'outcome="done"' in body
        return body if status == 200 and counted else None

    body = waiting.eventually_sync(scraped, what="metrics")
    labels = 'outcome="done",queue="default",type="test.record"'
    assert f"jobqueue_worker_jobs_total{{{labels}}} 1.0" in body
    assert (
        'jobqueue_worker_jobs_total{outcome="retried",queue="default",type="test.fail"} 1.0' in body
    )
    assert 'jobqueue_worker_concurrency{queue="default"} 3.0' in body
    assert "jobqueue_worker_job_duration_seconds_bucket" in body
    assert "jobqueue_worker_job_queue_wait_seconds_count" in body
    assert "jobqueue_worker_claim_batch_size_count" in body
    assert get("/nope")[0] == 404
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_json_logs_and_settings_from_the_environment(
    database_url: str, start_worker: typing.Any
) -> None:
    worker = start_worker(
        JOBQUEUE_LOG_FORMAT="json",
        JOBQUEUE_CONCURRENCY="3",
        JOBQUEUE_BURST="true",
        JOBQUEUE_WORKER_ID="from-env",
        JOBQUEUE_TYPES="test.record",
        JOBQUEUE_IMPORTS="jobqueue_test_handlers",  # and no --import
    )
    assert worker.wait() == 0
    entries = [json.loads(line) for line in worker.output().splitlines()]
    messages = [entry["message"] for entry in entries]
    assert "[Worker] Starting worker from-env" in messages
    assert any(
        "concurrency=3" in message and "types=test.record" in message for message in messages
    )
    assert "[Worker] Worker from-env stopped" in messages
    assert {"time", "level", "logger", "message"} <= set(entries[0])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--import", "no_such_module_here"], {}, "cannot import handler module"),
        (["--types", "nobody"], {}, "no handler registered for job types: nobody"),
        (["--concurrency", "0"], {}, "concurrency is 0, below the least allowed, 1"),
        ([], {"JOBQUEUE_BURST": "maybe"}, "JOBQUEUE_BURST='maybe' is not a boolean"),
    ],
)
def test_bad_worker_settings_are_one_clear_line(
    start_worker: typing.Any, args: list[str], env: dict[str, str], message: str
) -> None:
    worker = start_worker(*args, **env)
    assert worker.wait() in (1, 2)
    assert message in worker.output()
    assert "Traceback" not in worker.output()


@pytest.fixture
def private_server() -> collections.abc.Iterator[dict[str, typing.Any]]:
    """A PostgreSQL server of this test's own, which the test may restart. Its folder is
    outside pytest's private tmp tree, which the server's own user could not enter."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-restart-"))
    state: dict[str, typing.Any] = {"dir": folder / "pgdata"}
    state["context"] = embedded.embedded_postgres(state["dir"])
    state["url"] = state["context"].__enter__()
    try:
        yield state
    finally:
        state["context"].__exit__(None, None, None)
        shutil.rmtree(folder, ignore_errors=True)


def test_worker_survives_a_database_restart(
    private_server: dict[str, typing.Any], tmp_path: pathlib.Path, start_worker: typing.Any
) -> None:
    url = private_server["url"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE restart_test")
    database_url = psycopg.conninfo.make_conninfo(url, dbname="restart_test")
    assert (
        subprocess.run(
            [JOBQUEUE, "db", "migrate", "--database-url", database_url],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    runs = tmp_path / "runs.log"
    with jobqueue.SyncQueue(database_url) as queue:
        before = queue.enqueue_jobs(
            jobqueue.NewJob("test.record", {"log": str(runs), "pause": 0.02}) for _ in range(200)
        )
    worker = start_worker("--poll-interval", "0.2", "--concurrency", "4", url=database_url)
    waiting.eventually_sync(lambda: runs.exists() and runs.read_text().count("\n") >= 20)
    private_server["context"].__exit__(None, None, None)  # stop the server mid-run
    assert runs.read_text().count("\n") < 200, "the jobs were over before the restart"
    worker.wait_for_output("[Worker] Database error")
    assert worker.process.poll() is None, "the worker exited when the database went away"
    private_server["context"] = embedded.embedded_postgres(private_server["dir"])
    private_server["context"].__enter__()
    with jobqueue.SyncQueue(database_url) as queue:
        after = queue.enqueue_jobs(
            jobqueue.NewJob("test.record", {"log": str(runs)}) for _ in range(50)
        )
        waiting.eventually_sync(
            lambda: queue.get_queue_stats()["done"] == 250, timeout=60, what="all jobs done"
        )
    ran = [line.split()[0] for line in runs.read_text().splitlines()]
    assert sorted(ran) == sorted(str(j.id) for j in [*before, *after]), "lost or repeated"
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_failed_part_makes_the_process_exit_1_and_hand_its_job_back(
    database_url: str, tmp_path: pathlib.Path, start_worker: typing.Any
) -> None:
    held = enqueue(database_url, "test.hold", {"release": str(tmp_path / "never")})
    worker = start_worker("--heartbeat-interval", "0.1")
    wait_status(database_url, held.id, "running")
    with psycopg.connect(database_url, autocommit=True) as conn:
        # A trigger that refuses heartbeats with an error that is not an outage.
        conn.execute(
            """
            CREATE FUNCTION no_heartbeats() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at
                   AND NEW.status = 'running' AND OLD.status = 'running' THEN
                    RAISE EXCEPTION 'no heartbeats here';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER no_heartbeats BEFORE UPDATE ON jobs
                FOR EACH ROW EXECUTE FUNCTION no_heartbeats();
            """
        )
    assert worker.wait() == 1
    output = worker.output()
    assert "[Worker] heartbeat failed: RaiseException: no heartbeats here" in output
    assert "jobqueue: error: worker " in output
    back = job(database_url, held.id)
    assert back.status == "pending"
    assert back.attempts == 1
    assert "heartbeat failed" in (back.error or "")


def test_no_plugins_loads_only_the_imported_handlers(
    database_url: str, start_worker: typing.Any
) -> None:
    mine = enqueue(database_url, "test.record", {})
    theirs = enqueue(database_url, "jobqueue.noop", {})
    worker = start_worker("--no-plugins", "--burst")
    assert worker.wait() == 0
    assert job(database_url, mine.id).status == "done"
    assert job(database_url, theirs.id).status == "pending", "no handler for it was loaded"
    assert "parseBook" not in worker.output()
