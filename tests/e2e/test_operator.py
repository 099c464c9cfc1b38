"""The operator on the real control plane (issue 11).

The operator runs as a local process (``python -m jobqueue_operator``) with a kubeconfig
holding a token of its own ServiceAccount, bound by ``deploy/rbac.yaml``: a verb missing
there fails these tests. It watches the test's namespace only. The workers it creates run
as pods through the process kubelet, against the test's PostgreSQL database, with the
handlers of ``tests/support/jobqueue_operator_test_handlers.py``, which record every
finished run in a table keyed by the job id.

Run by ``make e2e`` (marker ``cluster``); ``make test`` deselects them. Times the issue
asks for (burst to scale-up on the poll and the NOTIFY paths, idle to scale-down, kill to
rescue) are printed in the summary of the run.
"""

from __future__ import annotations

import collections.abc
import contextlib
import datetime
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request
import uuid

import local_process
import operator_rig as rig
import psycopg
import psycopg.conninfo
import pytest
import waiting
import yaml

import jobqueue
from cluster import api, control_plane, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

Json = kubectl.Json
DEPLOY: typing.Final = control_plane.TESTS_DIR.parent / "deploy"
WORKER_IMAGE: typing.Final = "registry.example/jobqueue-worker:test"
SECRET: typing.Final = "queue-db"
Measure = collections.abc.Callable[[str, float], None]


# --- the operator under its own ServiceAccount ------------------------------------------------


@pytest.fixture(scope="session")
def operator_kubeconfig(
    kube_cluster: control_plane.ControlPlane,
    operator_system: kubectl.Kube,
    tmp_path_factory: pytest.TempPathFactory,
) -> pathlib.Path:
    """A kubeconfig with a token of the operator's ServiceAccount (bound by deploy/)."""
    token = operator_system.kubectl(
        "create", "token", "jobqueue-operator", "--duration=3h"
    ).stdout.strip()
    config = api.kubeconfig(
        kube_cluster.server, kube_cluster.pki.ca_cert, "jobqueue-operator", {"token": token}
    )
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


class Operator:
    def __init__(self, process: subprocess.Popen[bytes], log: pathlib.Path, port: int):
        self.process = process
        self.log = log
        self.port = port

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def priority(self) -> int:
        """Its kopf peering priority, from its first log line."""
        found = re.search(r"with priority (\d+)", self.output())
        assert found, "not started with peering"
        return int(found[1])

    def stop(self) -> None:
        local_process.stop(self.process)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as got:
            return typing.cast(bytes, got.read()).decode()

    def metric(self, name: str, jobqueue_name: str) -> float:
        """The value of ``name`` for one JobQueue (0 when the series is absent)."""
        for line in self.metrics().splitlines():
            if line.startswith(name + "{") and f'jobqueue="{jobqueue_name}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@contextlib.contextmanager
def running_operator(
    kube: kubectl.Kube, kubeconfig: pathlib.Path, log: pathlib.Path, **settings: str
) -> collections.abc.Iterator[Operator]:
    """``python -m jobqueue_operator`` for the test's namespace, Ready. At the end: stopped,
    and its log must show no refused API call (a verb missing from deploy/rbac.yaml)."""
    port = control_plane.free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DATABASE_URL" and not key.startswith("JOBQUEUE_")
    }
    env.update(
        KUBECONFIG=str(kubeconfig),
        JOBQUEUE_OPERATOR_NAMESPACES=kube.namespace,
        JOBQUEUE_OPERATOR_METRICS_PORT=str(port),
        **settings,
    )
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobqueue_operator"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    running = Operator(process, log, port)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"the operator exited:\n{running.output()[-3000:]}"
            return local_process.answers(f"http://127.0.0.1:{port}/healthz")

        waiting.eventually_sync(ready, timeout=60, interval=0.1, what="the operator's /healthz")
        yield running
    finally:
        running.stop()
        output = running.output()
        print(f"--- {log.name} (tail) ---\n" + "\n".join(output.splitlines()[-80:]))
    refused = [line for line in output.splitlines() if "forbidden" in line.lower()]
    assert not refused, "the operator was refused API calls:\n" + "\n".join(refused[:10])


@pytest.fixture
def operator(
    kube: kubectl.Kube, operator_kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> collections.abc.Iterator[Operator]:
    with running_operator(kube, operator_kubeconfig, tmp_path / "operator.log") as running:
        yield running


# --- JobQueues and what they own ----------------------------------------------------------------


def test_a_jobqueue_becomes_a_worker_deployment_a_service_and_a_status(
    kube: kubectl.Kube, operator: Operator, empty_database_url: str
) -> None:
    # The pods must pass PodSecurity `restricted`, and the database starts without a schema:
    # the operator migrates it before any worker runs.
    kube.kubectl(
        "label", "namespace", kube.namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    rig.database_secret(kube, empty_database_url)
    kube.apply(rig.jobqueue_manifest("books", scaling={"minReplicas": 1, "maxReplicas": 2}))

    made = kube.wait_for(lambda: rig.deployment(kube, "books"), "the worker Deployment")
    [owner] = made["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("JobQueue", "books", True)
    pod = made["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["worker"]
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": rig.SECRET, "key": "url"}
    assert env["JOBQUEUE_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["JOBQUEUE_CONCURRENCY"]["value"] == "2"
    assert env["JOBQUEUE_TYPES"]["value"] == "op.work"
    assert container["ports"][0]["name"] == "metrics"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = kube.get("service", "books-workers")
    assert service["metadata"]["ownerReferences"][0]["uid"] == owner["uid"]
    assert service["spec"]["ports"][0]["name"] == "metrics"

    # Admitted under `restricted`, migrated, Ready.
    [worker] = rig.ready_pods(kube, "books", 1)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone() == (True,)
    reconciled = rig.wait_reconciled(kube, "books")
    kube.wait_for(lambda: rig.status(kube, "books").get("readyReplicas") == 1, "readyReplicas 1")
    reconciled = rig.status(kube, "books")
    assert reconciled["desiredReplicas"] == 1
    assert reconciled["observedGeneration"] == 1
    assert rig.condition(kube, "books", "DatabaseReachable")["status"] == "True"
    table = kube.kubectl("get", "jq").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "READY",
        "PENDING",
        "RUNNING",
        "FAILED",
        "PAUSED",
        "REPLICAS",
        "AGE",
    ]
    assert table[1].split()[:7] == ["books", "True", "0", "0", "0", "false", "1"]

    # A job runs on it.
    rig.runs_table(empty_database_url)
    with jobqueue.SyncQueue(empty_database_url) as queue:
        job = queue.enqueue_job("op.work", {})
    kube.wait_for(lambda: len(rig.runs(empty_database_url)) == 1, "the job done")
    assert rig.runs(empty_database_url)[0][:2] == (job.id, worker["metadata"]["name"])

    # Paused by a person: the status and kubectl get jq say so; resumed, they say so again.
    with jobqueue.SyncQueue(empty_database_url) as queue:
        queue.pause_queue()
        kube.wait_for(lambda: rig.status(kube, "books").get("paused") is True, "paused")
        assert kube.kubectl("get", "jq").stdout.splitlines()[1].split()[5] == "true"
        queue.resume_queue()
        kube.wait_for(lambda: rig.status(kube, "books").get("paused") is False, "resumed")

    # A user's label on the Deployment survives a spec change that rolls out.
    kube.kubectl("label", "deployment", "books-workers", "team=reading")
    kube.kubectl(
        "patch", "jq", "books", "--type=merge", "-p", '{"spec":{"worker":{"concurrency":3}}}'
    )

    def rolled() -> bool:
        found = rig.deployment(kube, "books")
        assert found is not None
        env = {
            e["name"]: e.get("value")
            for e in found["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        return env["JOBQUEUE_CONCURRENCY"] == "3"

    kube.wait_for(rolled, "the new concurrency in the Deployment")
    assert rig.deployment(kube, "books")["metadata"]["labels"]["team"] == "reading"  # type: ignore[index]
    kube.wait_for(lambda: rig.status(kube, "books").get("observedGeneration") == 2, "generation 2")


INVALID: typing.Final = [
    (
        {"scaling": {"minReplicas": 5, "maxReplicas": 2}},
        "scaling.minReplicas must not be greater than scaling.maxReplicas",
    ),
    (
        {"scaling": {"minReplicas": 1, "activationThreshold": 5}},
        "scaling.activationThreshold only applies when scaling up from zero",
    ),
    ({"worker": {"concurrency": 0}}, "spec.worker.concurrency: Invalid value: 0"),
    ({"worker": {"image": None}}, "spec.worker.image: Required value"),
    ({"database": None}, "spec.database: Required value"),
    (
        {"worker": {"env": [{"name": "DATABASE_URL", "value": "postgresql://x"}]}},
        "worker.env must not set DATABASE_URL",
    ),
    ({"scaling": {"pollIntervalSeconds": 0}}, "spec.scaling.pollIntervalSeconds: Invalid value"),
    ({"metadata": {"name": "9lives"}}, "a JobQueue's name must be at most 55 characters"),
    (
        {"schedules": [{"name": "both", "type": "op.work", "cron": "@daily", "everySeconds": 60}]},
        "a schedule needs either cron or everySeconds, not both",
    ),
]


def _merge(base: Json, change: Json) -> Json:
    merged = dict(base)
    for key, value in change.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.mark.parametrize(("change", "message"), INVALID, ids=[m for _, m in INVALID])
def test_an_invalid_jobqueue_is_refused_with_its_message(
    kube: kubectl.Kube, operator_kubeconfig: pathlib.Path, change: Json, message: str
) -> None:
    manifest = rig.jobqueue_manifest("refused")
    metadata = change.pop("metadata", None)
    if metadata:
        manifest["metadata"] = metadata
    manifest["spec"] = _merge(manifest["spec"], change)
    refused = kube.apply(manifest, check=False)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr
    assert not kube.get("jobqueues")["items"]


def test_a_burst_scales_up_to_the_bound_runs_each_job_once_and_idle_scales_to_zero(
    kube: kubectl.Kube, operator: Operator, database_url: str, measure: Measure
) -> None:
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    kube.apply(
        rig.jobqueue_manifest(
            "burst",
            scaling={
                "maxReplicas": 3,
                "targetJobsPerReplica": 4,
                "pollIntervalSeconds": 2,
                "scaleDownDelaySeconds": 3,
            },
        )
    )
    rig.wait_reconciled(kube, "burst")
    assert rig.replicas(kube, "burst") == 0
    # Due in 6 s: the NOTIFY of the insert finds nothing due within the 2 s interval, so
    # the scale-up comes from a poll once they are (the pre-scale for jobs falling due).
    poll, lead = 2.0, 6.0
    due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=lead)
    began = time.monotonic()
    with jobqueue.SyncQueue(database_url) as queue:
        burst = queue.enqueue_jobs(
            jobqueue.NewJob("op.work", {"pause": 0.3}, run_at=due) for _ in range(30)
        )
    seen: list[int] = []

    def scaled_to(count: int) -> bool:
        now = rig.replicas(kube, "burst") or 0
        seen.append(now)
        return now >= count

    kube.wait_for(lambda: scaled_to(1), "the first scale-up")
    scaled = time.monotonic() - began
    assert lead - poll - 0.5 <= scaled <= lead + 0.5, "scaled for jobs due within one poll"
    measure(
        "jobs due -> scale-up patch, poll path (pollIntervalSeconds 2; from when the jobs"
        " fall within one interval of due)",
        scaled - (lead - poll),
    )
    kube.wait_for(lambda: scaled_to(3), "3 replicas")
    with jobqueue.SyncQueue(database_url) as queue:

        def all_done() -> bool:
            scaled_to(0)  # keeps a record of the replicas meanwhile
            return queue.get_queue_stats()["done"] == len(burst)

        kube.wait_for(all_done, "the burst done")
    idle = time.monotonic()
    assert max(seen) == 3, "never above maxReplicas"
    done = rig.runs(database_url)
    assert sorted(row[0] for row in done) == sorted(job.id for job in burst), "each job once"
    assert {row[2] for row in done} == {1}, "no job ran twice"
    assert len({row[1] for row in done}) > 1, "the burst was shared between the workers"

    scaled_down = rig.wait_replicas(kube, "burst", 0, timeout=60)
    measure("idle -> scale-down patch to 0 (scaleDownDelaySeconds 3)", scaled_down - idle)
    kube.wait_for(lambda: not rig.worker_pods(kube, "burst"), "the worker pods gone")
    final = rig.status(kube, "burst")
    assert final["desiredReplicas"] == 0
    assert "0 replicas" in final["lastScaleReason"] or "-> 0" in final["lastScaleReason"]
    assert rig.events(kube, "ScaledUp")
    assert rig.events(kube, "ScaledDown")
    assert operator.metric("jobqueue_operator_scale_events_total", "burst") >= 1


def test_the_specs_schedule_is_run_once_per_tick_from_zero_replicas(
    kube: kubectl.Kube, operator: Operator, database_url: str
) -> None:
    """spec.schedules: the operator enqueues each tick a poll ahead, so the queue, at zero
    replicas, has a worker in time; each tick runs once; the status shows the next run; a
    schedule taken out of the spec leaves the status."""
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    pulse = {"name": "e2e-pulse", "type": "op.work", "everySeconds": 4, "payload": {}}
    kube.apply(
        rig.jobqueue_manifest(
            "ticking", scaling={"pollIntervalSeconds": 2, "scaleDownDelaySeconds": 60},
            schedules=[pulse],
        )
    )  # fmt: skip
    rig.wait_reconciled(kube, "ticking")

    def scheduled() -> list[Json]:
        return typing.cast(list[Json], rig.status(kube, "ticking").get("schedules") or [])

    kube.wait_for(lambda: len(scheduled()) == 1, "the schedule in the status")
    (shown,) = scheduled()
    assert (shown["name"], shown["timing"]) == ("e2e-pulse", "every 4s")
    assert shown["nextRunAt"] is not None

    def ticks() -> list[tuple[str, str, int]]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT unique_key, status, attempts FROM jobs WHERE type = 'op.work'"
                " ORDER BY run_at"
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    kube.wait_for(
        lambda: sum(status == "done" for _, status, _ in ticks()) >= 3,
        "three ticks run by the workers",
        timeout=60,
    )
    done = [key for key, status, _ in ticks() if status == "done"]
    assert all(key.startswith("schedule:e2e-pulse@") for key in done)
    ran = rig.runs(database_url)
    assert len(ran) == len({row[0] for row in ran}), "a tick ran twice"
    assert {row[2] for row in ran} == {1}
    # Out of the spec: nothing more is enqueued for it, and the status forgets it.
    manifest = rig.jobqueue_manifest("ticking")
    kube.apply(manifest)
    kube.wait_for(lambda: not scheduled(), "the schedule gone from the status")


def test_notify_wakes_a_queue_at_zero(
    kube: kubectl.Kube, operator: Operator, database_url: str, measure: Measure
) -> None:
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    # Polled hourly: only the database's NOTIFY can explain a scale-up within seconds.
    kube.apply(rig.jobqueue_manifest("wake", scaling={"pollIntervalSeconds": 3600}))
    rig.wait_reconciled(kube, "wake")
    kube.wait_for(
        lambda: "listening" in rig.condition(kube, "wake", "DatabaseReachable").get("message", ""),
        "the operator listening",
    )
    began = time.monotonic()
    with jobqueue.SyncQueue(database_url) as queue:
        job = queue.enqueue_job("op.work", {})
    woke = rig.wait_replicas(kube, "wake", 1, timeout=30)
    measure("burst -> scale-up patch, NOTIFY path (pollIntervalSeconds 3600)", woke - began)
    assert woke - began < 15
    kube.wait_for(lambda: [row[0] for row in rig.runs(database_url)] == [job.id], "the job done")


def test_scale_down_removes_idle_workers_first(
    kube: kubectl.Kube, operator: Operator, database_url: str, tmp_path: pathlib.Path
) -> None:
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    kube.apply(rig.jobqueue_manifest("busy", scaling={"maxReplicas": 3, "targetJobsPerReplica": 2}))
    rig.wait_reconciled(kube, "busy")
    releases = [tmp_path / f"release-{n}" for n in range(6)]
    with jobqueue.SyncQueue(database_url) as queue:
        held = queue.enqueue_jobs(
            jobqueue.NewJob("op.work", {"release": str(path)}) for path in releases
        )
    release_of = {job.id: path for job, path in zip(held, releases, strict=True)}

    def all_running() -> dict[uuid.UUID, jobqueue.Job] | None:
        jobs = rig.jobs_by_status(database_url, *release_of)
        return jobs if all(job.status == "running" for job in jobs.values()) else None

    jobs = kube.wait_for(all_running, "6 jobs running on 3 workers", timeout=90)
    by_worker: dict[str, list[uuid.UUID]] = {}
    for job in jobs.values():
        by_worker.setdefault(job.locked_by or "", []).append(job.id)
    assert len(by_worker) == 3, by_worker
    keeper = sorted(by_worker)[1]
    for worker, ids in by_worker.items():
        if worker != keeper:
            for job_id in ids:
                release_of[job_id].touch()

    # Two jobs left, two per replica: one replica; the busy one stays.
    rig.wait_replicas(kube, "busy", 1)
    [survivor] = kube.wait_for(
        lambda: len(rig.worker_pods(kube, "busy")) == 1 and rig.live_pods(kube, "busy"),
        "one worker pod left",
    )
    assert survivor["metadata"]["name"] == keeper
    cost = survivor["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
    assert cost == "2"
    still = rig.jobs_by_status(database_url, *by_worker[keeper])
    assert all(job.status == "running" and job.attempts == 1 for job in still.values())
    for job_id in by_worker[keeper]:
        release_of[job_id].touch()
    kube.wait_for(lambda: len(rig.runs(database_url)) == 6, "all six done")
    assert {row[2] for row in rig.runs(database_url)} == {1}, "no job was interrupted"


def test_a_killed_workers_job_is_rescued_by_the_operator_and_completes(
    kube: kubectl.Kube,
    operator: Operator,
    database_url: str,
    tmp_path: pathlib.Path,
    measure: Measure,
) -> None:
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    kube.apply(
        rig.jobqueue_manifest(
            "crash",
            scaling={"minReplicas": 1, "maxReplicas": 1},
            staleJobTimeoutSeconds=3,
            env={"JOBQUEUE_RESCUE_INTERVAL": "0"},  # the rescue is the operator's alone
        )
    )
    [pod] = rig.ready_pods(kube, "crash", 1)
    release = tmp_path / "release"
    with jobqueue.SyncQueue(database_url) as queue:
        job = queue.enqueue_job("op.work", {"release": str(release)})

    def running() -> jobqueue.Job | None:
        found = rig.jobs_by_status(database_url, job.id).get(job.id)
        return found if found is not None and found.status == "running" else None

    held = kube.wait_for(running, "the job running")
    assert held.locked_by == pod["metadata"]["name"]
    os.kill(kubectl.pid(pod), signal.SIGKILL)
    killed = time.monotonic()
    release.touch()  # the next run finishes at once

    def rescued() -> bool:
        found = rig.jobs_by_status(database_url, job.id)[job.id]
        return found.status != "running" or found.attempts > 1

    kube.wait_for(rescued, "the job rescued", timeout=60)
    measure(
        "kill -9 of a worker -> its job rescued (staleJobTimeoutSeconds 3)",
        time.monotonic() - killed,
    )
    kube.wait_for(lambda: len(rig.runs(database_url)) == 1, "the job done")
    [(job_id, _, attempt)] = rig.runs(database_url)
    assert (job_id, attempt) == (job.id, 2)
    [event] = kube.wait_for(lambda: rig.events(kube, "RescuedStaleJobs"), "the rescue's Event")
    assert str(job.id) in event["message"]
    kube.wait_for(lambda: rig.status(kube, "crash").get("rescuedJobs") == 1, "rescuedJobs 1")
    assert operator.metric("jobqueue_operator_rescued_jobs_total", "crash") == 1


def test_a_database_outage_keeps_the_replicas_and_is_recovered_from(
    kube: kubectl.Kube,
    operator: Operator,
    server_url: str,
    database_url: str,
    tmp_path: pathlib.Path,
    measure: Measure,
) -> None:
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    kube.apply(
        rig.jobqueue_manifest(
            "outage",
            scaling={"maxReplicas": 2, "targetJobsPerReplica": 1, "scaleDownDelaySeconds": 1},
        )
    )
    rig.wait_reconciled(kube, "outage")
    release = tmp_path / "release"
    with jobqueue.SyncQueue(database_url) as queue:
        queue.enqueue_jobs(jobqueue.NewJob("op.work", {"release": str(release)}) for _ in range(2))
    rig.wait_replicas(kube, "outage", 2)

    with rig.database_blocked(server_url, database_url):
        down = kube.wait_for(
            lambda: (
                (found := rig.condition(kube, "outage", "DatabaseReachable")).get("status")
                == "False"
                and found
            ),
            "DatabaseReachable False",
            timeout=60,
        )
        assert down["reason"] == "DatabaseUnreachable"
        assert "not currently accepting connections" in down["message"] or down["message"]
        assert rig.condition(kube, "outage", "Ready")["status"] == "False"
        kube.wait_for(lambda: rig.events(kube, "DatabaseUnreachable"), "the outage's Event")
        errors = operator.metric("jobqueue_operator_reconcile_errors_total", "outage")
        kube.wait_for(
            lambda: (
                operator.metric("jobqueue_operator_reconcile_errors_total", "outage") >= errors + 2
            ),
            "more failed reconciles",
            timeout=60,
        )
        assert rig.replicas(kube, "outage") == 2, "no scaling for lack of data"
        restored = time.monotonic()
    kube.wait_for(
        lambda: rig.condition(kube, "outage", "DatabaseReachable").get("status") == "True",
        "DatabaseReachable True again",
        timeout=60,
    )
    measure("database back -> DatabaseReachable True", time.monotonic() - restored)
    assert rig.condition(kube, "outage", "Ready")["status"] == "True"
    release.touch()
    kube.wait_for(lambda: len(rig.runs(database_url)) == 2, "the held jobs done", timeout=90)


def test_deleting_the_jobqueue_removes_what_it_owns(
    kube: kubectl.Kube, operator: Operator, database_url: str
) -> None:
    rig.database_secret(kube, database_url)
    kube.apply(rig.jobqueue_manifest("gone", scaling={"minReplicas": 1}))
    [pod] = rig.ready_pods(kube, "gone", 1)
    rig.wait_reconciled(kube, "gone")
    assert operator.metric("jobqueue_operator_desired_replicas", "gone") == 1
    kube.kubectl("delete", "jobqueue", "gone", "--timeout=60s")
    kube.wait_for(
        lambda: not kube.get("deployments,services,replicasets,pods")["items"],
        "the garbage collector to remove the Deployment, Service, ReplicaSet and pods",
    )
    kube.wait_for(
        lambda: 'jobqueue="gone"' not in operator.metrics(),
        "the JobQueue's metrics gone",
        timeout=30,
    )
    with contextlib.suppress(ProcessLookupError):
        os.kill(kubectl.pid(pod), 0)
        raise AssertionError("the worker process outlived its pod")


def test_two_operators_with_peering_one_active_and_the_other_takes_over(
    kube: kubectl.Kube,
    operator_kubeconfig: pathlib.Path,
    database_url: str,
    tmp_path: pathlib.Path,
) -> None:
    admin = kubectl.Kube(kube.plane, "default")
    admin.kubectl("apply", "-f", str(rig.DEPLOY / "peering.yaml"))
    admin.kubectl(
        "wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s"
    )
    # An operator limited to namespaces meets its peers in a KopfPeering in each of them.
    kube.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "jq"}})
    rig.database_secret(kube, database_url)
    peering = {"JOBQUEUE_OPERATOR_PEERING": "jq"}
    with (
        running_operator(kube, operator_kubeconfig, tmp_path / "first.log", **peering) as first,
        running_operator(kube, operator_kubeconfig, tmp_path / "second.log", **peering) as second,
    ):
        acting, standby = sorted((first, second), key=Operator.priority, reverse=True)

        def peered() -> bool:
            # The higher priority works; the lower one either started paused (kopf says
            # nothing then) or paused when the other came.
            said = [line for line in standby.output().splitlines() if "operations" in line]
            return "Resuming operations" in acting.output() and (
                not said or "Pausing operations" in said[-1]
            )

        kube.wait_for(peered, "one operator active, the other paused")
        kube.apply(rig.jobqueue_manifest("shared", scaling={"minReplicas": 1}))
        rig.wait_replicas(kube, "shared", 1)
        kube.wait_for(lambda: "Scaled " in acting.output(), "the active operator scaled")
        assert "owned_objects" not in standby.output(), "the paused operator acted"
        acting.stop()  # leaves the peering as it goes
        kube.kubectl(
            "patch", "jq", "shared", "--type=merge", "-p", '{"spec":{"scaling":{"minReplicas":2}}}'
        )
        rig.wait_replicas(kube, "shared", 2, timeout=60)
        assert "Resuming operations" in standby.output()
        assert "Scaled " in standby.output()


def test_two_jobqueues_side_by_side_one_waiting_for_its_secret(
    kube: kubectl.Kube, operator: Operator, database_url: str, empty_database_url: str
) -> None:
    rig.database_secret(kube, database_url)
    kube.apply(rig.jobqueue_manifest("left", scaling={"minReplicas": 1}))
    right = rig.jobqueue_manifest("right", scaling={"minReplicas": 1})
    right["spec"]["database"]["secretRef"]["name"] = "right-db"
    kube.apply(right)

    def missing() -> Json | None:
        found = rig.condition(kube, "right", "DatabaseReachable")
        return found if found.get("reason") == "SecretMissing" else None

    reported = kube.wait_for(missing, "right: SecretMissing", timeout=60)
    assert reported["status"] == "False"
    assert "right-db" in reported["message"]
    assert rig.condition(kube, "right", "Ready")["status"] == "False"
    kube.wait_for(lambda: rig.events(kube, "SecretMissing"), "the missing Secret's Event")
    # The other queue is not held up, and no worker starts without a known database.
    rig.ready_pods(kube, "left", 1)
    rig.wait_reconciled(kube, "left")
    assert rig.replicas(kube, "right") == 0

    # The Secret arrives: the operator migrates the empty database, then starts the workers.
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "right-db"},
            "stringData": {"url": empty_database_url},
        }
    )
    rig.wait_reconciled(kube, "right")
    rig.ready_pods(kube, "right", 1)
    for url in (database_url, empty_database_url):
        rig.runs_table(url)
        with jobqueue.SyncQueue(url) as queue:
            queue.enqueue_job("op.work", {})
    for name, url in (("left", database_url), ("right", empty_database_url)):
        kube.wait_for(lambda url=url: len(rig.runs(url)) == 1, f"{name}'s job done")
        [(_, worker, _)] = rig.runs(url)
        assert worker.startswith(f"{name}-workers-"), "each queue's jobs on its own workers"


def test_deploy_operator_yaml_runs_the_operator_as_a_pod(
    kube: kubectl.Kube, operator_kubeconfig: pathlib.Path, database_url: str
) -> None:
    """The operator's own Deployment, as shipped, under PodSecurity `restricted` in
    jobqueue-system, with its ServiceAccount's token (from the kubelet), here limited to the
    test's namespace so that it does not meet the other tests' operators."""
    [deployment] = yaml.safe_load_all((rig.DEPLOY / "operator.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    container["env"].append({"name": "JOBQUEUE_OPERATOR_NAMESPACES", "value": kube.namespace})
    system = kubectl.Kube(kube.plane, "jobqueue-system")
    system.apply(deployment)
    try:
        system.kubectl(
            "rollout", "status", "deployment/jobqueue-operator", "--timeout=120s", timeout=130
        )
        rig.database_secret(kube, database_url)
        kube.apply(rig.jobqueue_manifest("podded", scaling={"minReplicas": 1}))
        rig.ready_pods(kube, "podded", 1)
        rig.wait_reconciled(kube, "podded")
        [pod] = system.pods("app.kubernetes.io/name=jobqueue-operator")
        assert "Scaled " in system.pod_log(pod)
        assert "forbidden" not in system.pod_log(pod).lower()
    finally:
        system.kubectl("delete", "deployment", "jobqueue-operator", "--wait=false")
        system.wait_for(
            lambda: not system.pods("app.kubernetes.io/name=jobqueue-operator"),
            "the operator pod gone",
        )
