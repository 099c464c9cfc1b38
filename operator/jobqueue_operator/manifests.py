"""The objects a ``JobQueue`` owns, built from its spec: the worker Deployment and the
Service in front of the workers' metrics. Pure functions, no I/O: the handlers apply what
these return with server-side apply, so every field here is a field the operator owns and
anything else on those objects is the user's.

The worker's settings go in as ``JOBQUEUE_*`` variables named by ``jobqueue.settings``;
the database URL only through a ``secretKeyRef``. The pod passes PodSecurity
``restricted``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import typing

from jobqueue import settings
from jobqueue_operator import resource

Json = dict[str, typing.Any]
Spec = collections.abc.Mapping[str, typing.Any]

METRICS_PORT: typing.Final = 9090
CONTAINER: typing.Final = "worker"
# The worker hands its running jobs back this long before the kubelet's SIGKILL.
GRACE_MARGIN: typing.Final = 5
DEFAULT_TERMINATION_GRACE: typing.Final = 30
DEFAULT_STALE_TIMEOUT: typing.Final = 300
DEFAULT_CONCURRENCY: typing.Final = 4
# Heartbeats at least this often: the worker wants the stale threshold >= 6 heartbeats.
HEARTBEATS_PER_STALE_TIMEOUT: typing.Final = 6
NON_ROOT_ID: typing.Final = 65532
DELETION_COST: typing.Final = "controller.kubernetes.io/pod-deletion-cost"
# Variables the operator derives from the spec; the CRD refuses them in worker.env.
MANAGED_ENV: typing.Final = frozenset(
    {
        settings.DATABASE_URL.env,
        settings.QUEUE.env,
        settings.CONCURRENCY.env,
        settings.WORKER_ID.env,
        settings.METRICS_PORT.env,
        settings.TYPES.env,
    }
)


@dataclasses.dataclass(frozen=True)
class Owner:
    """The ``JobQueue`` the objects belong to."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: collections.abc.Mapping[str, typing.Any]) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def workers_name(owner: Owner) -> str:
    """The Deployment's and the Service's name (the CRD keeps it a DNS label)."""
    return f"{owner.name}-workers"


def selector_labels(owner: Owner) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "jobqueue-worker",
        "app.kubernetes.io/instance": owner.name,
    }


def label_selector(owner: Owner) -> str:
    """``selector_labels`` as a ``labelSelector`` query value."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(owner).items())


def labels(owner: Owner) -> dict[str, str]:
    return {
        **selector_labels(owner),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "jobqueue-operator",
    }


def owner_reference(owner: Owner) -> Json:
    # No blockOwnerDeletion: that would need update rights on jobqueues/finalizers where the
    # OwnerReferencesPermissionEnforcement admission plugin runs, for no gain here.
    return {
        "apiVersion": f"{resource.API_GROUP}/{resource.API_VERSION}",
        "kind": resource.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
    }


def _metadata(owner: Owner) -> Json:
    return {
        "name": workers_name(owner),
        "namespace": owner.namespace,
        "labels": labels(owner),
        "ownerReferences": [owner_reference(owner)],
    }


def _seconds(value: float) -> str:
    return f"{value:g}"


def worker_env(spec: Spec) -> list[Json]:
    """The worker container's environment: the settings derived from the spec, then the
    spec's own ``worker.env`` (which replaces a derived variable of the same name, such as
    the heartbeat interval; the CRD refuses the ones in ``MANAGED_ENV``)."""
    worker = spec["worker"]
    stale = spec.get("staleJobTimeoutSeconds", DEFAULT_STALE_TIMEOUT)
    grace = worker.get("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE)
    heartbeat = min(
        typing.cast(float, settings.HEARTBEAT_INTERVAL.default),
        stale / HEARTBEATS_PER_STALE_TIMEOUT,
    )
    secret = spec["database"]["secretRef"]
    derived: list[Json] = [
        {
            "name": settings.DATABASE_URL.env,
            "valueFrom": {
                "secretKeyRef": {"name": secret["name"], "key": secret.get("key", "url")}
            },
        },
        {
            "name": settings.WORKER_ID.env,
            # The pod's name: the operator maps locked_by back to pods for the deletion cost.
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
        {"name": settings.QUEUE.env, "value": spec.get("queue", "default")},
        {
            "name": settings.CONCURRENCY.env,
            "value": str(worker.get("concurrency", DEFAULT_CONCURRENCY)),
        },
        {"name": settings.METRICS_PORT.env, "value": str(METRICS_PORT)},
    ]
    if worker.get("jobTypes"):
        derived.append({"name": settings.TYPES.env, "value": ",".join(worker["jobTypes"])})
    derived += [
        {"name": settings.STALE_THRESHOLD.env, "value": _seconds(stale)},
        {"name": settings.HEARTBEAT_INTERVAL.env, "value": _seconds(heartbeat)},
        {"name": settings.GRACE_TIMEOUT.env, "value": _seconds(max(grace - GRACE_MARGIN, 0))},
    ]
    if worker.get("pollIntervalSeconds") is not None:
        derived.append(
            {
                "name": settings.POLL_INTERVAL.env,
                "value": _seconds(worker["pollIntervalSeconds"]),
            }
        )
    given = {entry["name"]: dict(entry) for entry in worker.get("env", ())}
    env = [given.pop(entry["name"], entry) for entry in derived]
    return env + list(given.values())


def _probe(path: str, period: int, failures: int) -> Json:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def worker_container(spec: Spec) -> Json:
    worker = spec["worker"]
    container: Json = {
        "name": CONTAINER,
        "image": worker["image"],
        "args": ["worker"],
        "env": worker_env(spec),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "readinessProbe": _probe("/readyz", period=2, failures=2),
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (an emptyDir)
    }
    if worker.get("imagePullPolicy"):
        container["imagePullPolicy"] = worker["imagePullPolicy"]
    if worker.get("resources"):
        container["resources"] = dict(worker["resources"])
    return container


def pod_spec(spec: Spec) -> Json:
    worker = spec["worker"]
    pod: Json = {
        "terminationGracePeriodSeconds": worker.get(
            "terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE
        ),
        # The workers talk to PostgreSQL only, never to the API server.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_ID,
            "runAsGroup": NON_ROOT_ID,
            "fsGroup": NON_ROOT_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [worker_container(spec)],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    for field in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        if worker.get(field):
            pod[field] = worker[field]
    if worker.get("serviceAccountName"):
        pod["serviceAccountName"] = worker["serviceAccountName"]
    return pod


def worker_deployment(owner: Owner, spec: Spec, replicas: int) -> Json:
    """The worker Deployment with ``replicas`` (a field the operator owns too)."""
    template_meta: Json = {"labels": labels(owner)}
    if spec["worker"].get("podAnnotations"):
        template_meta["annotations"] = dict(spec["worker"]["podAnnotations"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(owner)},
            "template": {"metadata": template_meta, "spec": pod_spec(spec)},
        },
    }


def metrics_service(owner: Owner) -> Json:
    """A headless Service: one endpoint per worker pod, for Prometheus to scrape each."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner),
            "ports": [
                {
                    "name": "metrics",
                    "port": METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                }
            ],
        },
    }


def deletion_cost_patch(running_jobs: int) -> Json:
    """The merge patch that ranks a worker pod for scale-down: busier pods cost more."""
    return {"metadata": {"annotations": {DELETION_COST: str(running_jobs)}}}
