"""JobQueues on the test control plane, shared by the e2e tests of the operator and of
monitoring: the CRD and the operator's RBAC from ``deploy/``, a ``JobQueue`` whose workers
run the handlers of ``jobqueue_operator_test_handlers``, its database Secret, and waits on
what the operator makes of it (Deployment, pods, status, Events)."""

from __future__ import annotations

import collections.abc
import contextlib
import json
import pathlib
import subprocess
import time
import typing
import uuid

import jobqueue_operator_test_handlers as handlers
import psycopg
import psycopg.conninfo

import jobqueue
from cluster import control_plane, kubectl

Json = kubectl.Json
DEPLOY: typing.Final = control_plane.TESTS_DIR.parent / "deploy"
CHART: typing.Final = control_plane.TESTS_DIR.parent / "charts" / "jobqueue"
WORKER_IMAGE: typing.Final = "registry.example/jobqueue-worker:test"
SECRET: typing.Final = "queue-db"


def install_crd_and_rbac(plane: control_plane.ControlPlane) -> kubectl.Kube:
    """The CRD and the RBAC of ``deploy/`` applied (the operator's ServiceAccount made);
    returns kubectl for the operator's namespace, jobqueue-system."""
    system = kubectl.Kube(plane, "jobqueue-system")
    system.kubectl("apply", "-f", str(DEPLOY / "crd.yaml"))
    system.kubectl("apply", "-f", str(DEPLOY / "rbac.yaml"))
    system.kubectl(
        "wait", "--for=condition=Established", "crd/jobqueues.jobqueue.dev", "--timeout=60s"
    )
    system.wait_for(
        lambda: (
            system.kubectl("get", "serviceaccount", "jobqueue-operator", check=False).returncode
            == 0
        ),
        "the operator's ServiceAccount",
    )
    return system


def install_chart(
    kube: kubectl.Kube, release: str, values: pathlib.Path
) -> subprocess.CompletedProcess[str]:
    """``helm install --wait`` of ``charts/jobqueue`` with these values. The CRD may be in the
    cluster already, applied from deploy/crd.yaml by the operator's tests or kept by an
    earlier release: then the release adopts it, as a user moving from deploy/ to the chart
    would."""
    crd_there = kube.kubectl("get", "crd", "jobqueues.jobqueue.dev", check=False).returncode == 0
    return kube.helm(
        "install",
        release,
        str(CHART),
        "--values",
        str(values),
        "--wait",
        "--timeout=120s",
        *(["--take-ownership"] if crd_there else []),
    )


def jobqueue_manifest(
    name: str,
    *,
    scaling: Json | None = None,
    env: dict[str, str] | None = None,
    **spec: typing.Any,
) -> Json:
    worker_env = {
        "PYTHONPATH": str(kubectl.tests_support()),
        "JOBQUEUE_IMPORTS": "jobqueue_operator_test_handlers",
        "JOBQUEUE_PLUGINS": "false",
        **(env or {}),
    }
    return {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name},
        "spec": {
            "database": {"secretRef": {"name": SECRET}},
            "worker": {
                "image": WORKER_IMAGE,
                "concurrency": 2,
                "pollIntervalSeconds": 1,
                "jobTypes": ["op.work"],
                "terminationGracePeriodSeconds": 10,
                "env": [{"name": key, "value": value} for key, value in worker_env.items()],
            },
            "scaling": {"pollIntervalSeconds": 1, "scaleDownDelaySeconds": 2, **(scaling or {})},
            **spec,
        },
    }


def database_secret(kube: kubectl.Kube, url: str) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "stringData": {"url": url},
        }
    )


def runs_table(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(handlers.RUNS_TABLE)


def runs(database_url: str) -> list[tuple[uuid.UUID, str, int]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT job_id, worker, attempt FROM operator_runs").fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def deployment(kube: kubectl.Kube, name: str) -> Json | None:
    found = kube.kubectl("get", "deployment", f"{name}-workers", "-o", "json", check=False)
    return typing.cast(Json, json.loads(found.stdout)) if found.returncode == 0 else None


def replicas(kube: kubectl.Kube, name: str) -> int | None:
    found = deployment(kube, name)
    return None if found is None else int(found["spec"].get("replicas", 0))


def status(kube: kubectl.Kube, name: str) -> Json:
    return typing.cast(Json, kube.get("jobqueue", name).get("status") or {})


def condition(kube: kubectl.Kube, name: str, kind: str) -> Json:
    for found in status(kube, name).get("conditions", []):
        if found["type"] == kind:
            return typing.cast(Json, found)
    return {}


def worker_pods(kube: kubectl.Kube, name: str) -> list[Json]:
    return kube.pods(f"app.kubernetes.io/instance={name}")


def events(kube: kubectl.Kube, reason: str) -> list[Json]:
    found = kube.get("events", "--field-selector", f"reason={reason}")
    return list(found["items"])


def wait_reconciled(kube: kubectl.Kube, name: str) -> Json:
    """The JobQueue's status once a reconcile wrote Ready=True."""
    return typing.cast(
        Json,
        kube.wait_for(
            lambda: condition(kube, name, "Ready").get("status") == "True" and status(kube, name),
            f"JobQueue {name} Ready",
            timeout=60,
        ),
    )


def wait_replicas(kube: kubectl.Kube, name: str, count: int, timeout: float = 90) -> float:
    """Waits for the Deployment's spec.replicas to be ``count``; returns when it was seen."""
    kube.wait_for(lambda: replicas(kube, name) == count, f"{name}: {count} replicas", timeout)
    return time.monotonic()


def live_pods(kube: kubectl.Kube, name: str) -> list[Json]:
    return [p for p in worker_pods(kube, name) if not p["metadata"].get("deletionTimestamp")]


def ready_pods(kube: kubectl.Kube, name: str, count: int) -> list[Json]:
    def check() -> list[Json] | None:
        pods = worker_pods(kube, name)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(pods) == len(live) == count and all(map(kubectl.ready, live)):
            return live
        return None

    return typing.cast(list[Json], kube.wait_for(check, f"{count} Ready pods of {name}"))


def jobs_by_status(database_url: str, *ids: uuid.UUID) -> dict[uuid.UUID, jobqueue.Job]:
    with jobqueue.SyncQueue(database_url) as queue:
        found = {job_id: queue.get_job_status(job_id) for job_id in ids}
    return {job_id: job for job_id, job in found.items() if job is not None}


@contextlib.contextmanager
def database_blocked(server_url: str, database_url: str) -> collections.abc.Iterator[None]:
    """No new connection to the test's database, and the open ones cut."""
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
