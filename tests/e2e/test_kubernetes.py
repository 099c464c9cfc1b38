"""Worker Deployments on the real control plane (issue 8): kubectl against kube-apiserver,
the controller manager's deployment, replica-set and garbage-collector controllers, and the
process kubelet running real ``jobqueue worker`` processes against the test's PostgreSQL.

Run by ``make e2e`` (marker ``cluster``); ``make test`` deselects them.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time
import typing
import urllib.request

import pytest
import waiting
import yaml

import jobqueue
from cluster import kubectl, versions

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

Json = kubectl.Json
SELECTOR = "app=jobqueue-worker"


def worker_manifests(database_url: str, replicas: int, **env: str) -> list[Json]:
    """A Secret with the database URL, a ConfigMap with the poll interval and a Deployment of
    workers that reads both."""
    settings = {"JOBQUEUE_CONCURRENCY": "4", **env}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "jobqueue-database"},
            "stringData": {"url": database_url},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "jobqueue-settings"},
            "data": {"poll-interval": "0.5"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "workers", "labels": {"app": "jobqueue-worker"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "jobqueue-worker"}},
                "template": {
                    "metadata": {"labels": {"app": "jobqueue-worker"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "containers": [
                            {
                                "name": "worker",
                                "image": "ghcr.io/jobqueue/jobqueue-worker:test",
                                "args": ["worker", "--import", "jobqueue_test_handlers"],
                                "ports": [{"name": "metrics", "containerPort": 9090}],
                                "env": [
                                    {
                                        "name": "DATABASE_URL",
                                        "valueFrom": {
                                            "secretKeyRef": {
                                                "name": "jobqueue-database",
                                                "key": "url",
                                            }
                                        },
                                    },
                                    {
                                        "name": "JOBQUEUE_WORKER_ID",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                    },
                                    {
                                        "name": "JOBQUEUE_POLL_INTERVAL",
                                        "valueFrom": {
                                            "configMapKeyRef": {
                                                "name": "jobqueue-settings",
                                                "key": "poll-interval",
                                            }
                                        },
                                    },
                                    {"name": "JOBQUEUE_METRICS_PORT", "value": "9090"},
                                    {"name": "PYTHONPATH", "value": str(kubectl.tests_support())},
                                    *({"name": k, "value": v} for k, v in settings.items()),
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/readyz", "port": "metrics"},
                                    "periodSeconds": 1,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "metrics"},
                                    "periodSeconds": 2,
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


def ready_workers(kube: kubectl.Kube, count: int) -> list[Json]:
    """Waits for exactly ``count`` Ready worker pods, none of them being deleted."""

    def check() -> list[Json] | None:
        pods = kube.pods(SELECTOR)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(pods) == count and len(live) == count and all(map(kubectl.ready, live)):
            return live
        return None

    return typing.cast(list[Json], kube.wait_for(check, f"{count} Ready worker pods"))


def deploy_workers(kube: kubectl.Kube, database_url: str, replicas: int, **env: str) -> list[Json]:
    kube.apply(*worker_manifests(database_url, replicas, **env))
    kube.kubectl("rollout", "status", "deployment/workers", "--timeout=180s", timeout=200)
    return ready_workers(kube, replicas)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return typing.cast(bytes, response.read()).decode()


def test_the_api_server_reports_the_pinned_version(kube: kubectl.Kube) -> None:
    version = json.loads(kube.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == versions.kubernetes_version()
    node = kube.get("node", "jobqueue-node")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == versions.kubernetes_version()


def test_a_deployment_of_three_workers_drains_a_burst(
    kube: kubectl.Kube, database_url: str, tmp_path: pathlib.Path
) -> None:
    pods = deploy_workers(kube, database_url, 3)
    pod_ips = {pod["status"]["podIP"] for pod in pods}
    assert len(pod_ips) == 3, "each pod has an address of its own"
    for pod in pods:
        assert process_alive(kubectl.pid(pod))
        # Every replica listens on the same containerPort, on its own pod IP.
        assert http_get(f"http://{pod['status']['podIP']}:9090/healthz") == "ok\n"
        conditions = {c["type"]: c for c in pod["status"]["conditions"]}
        assert {"PodScheduled", "Initialized", "ContainersReady", "Ready"} <= set(conditions)
        assert conditions["Ready"]["lastTransitionTime"]
        # Its name from a fieldRef, its settings from the ConfigMap and the env values.
        output = kube.pod_log(pod)
        assert "[Worker] Starting worker " + pod["metadata"]["name"] in output
        assert "concurrency=4 poll_interval=0.5s" in output

    runs = tmp_path / "runs.log"
    with jobqueue.SyncQueue(database_url) as queue:
        burst = queue.enqueue_jobs(
            jobqueue.NewJob("test.record", {"log": str(runs), "pause": 0.05}) for _ in range(120)
        )
        waiting.eventually_sync(
            lambda: queue.get_queue_stats()["done"] == len(burst), timeout=120, what="burst done"
        )
    lines = runs.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(str(job.id) for job in burst)
    ran_in = {int(line.split()[1]) for line in lines}
    assert ran_in <= {kubectl.pid(pod) for pod in pods}
    assert len(ran_in) > 1, "the burst was shared between the pods"


def test_scale_down_is_graceful_and_honours_the_deletion_cost(
    kube: kubectl.Kube, database_url: str, tmp_path: pathlib.Path
) -> None:
    # Two slots per pod and six held jobs: every pod is busy with exactly two when it scales.
    settings = {"JOBQUEUE_CONCURRENCY": "2", "JOBQUEUE_GRACE_TIMEOUT": "3"}
    pods = deploy_workers(kube, database_url, 3, **settings)
    keeper = pods[1]["metadata"]["name"]
    kube.kubectl("annotate", "pod", keeper, "controller.kubernetes.io/pod-deletion-cost=1000")
    release = tmp_path / "release"
    with jobqueue.SyncQueue(database_url) as queue:
        held = queue.enqueue_jobs(
            jobqueue.NewJob("test.hold", {"release": str(release)}) for _ in range(6)
        )
        waiting.eventually_sync(
            lambda: queue.get_queue_stats()["running"] == len(held), what="held jobs running"
        )

    kube.kubectl("scale", "deployment/workers", "--replicas=1")
    [survivor] = ready_workers(kube, 1)
    assert survivor["metadata"]["name"] == keeper, "the pod with the higher cost stays"
    victims = [pod for pod in pods if pod["metadata"]["name"] != keeper]
    for pod in victims:
        assert not process_alive(kubectl.pid(pod))
        output = kube.pod_log(pod)
        # SIGTERM from the kubelet, the worker's own grace, its jobs handed back, exit.
        assert "[Worker] Received SIGTERM, initiating graceful shutdown..." in output
        assert "[Worker] Waiting for 2 active jobs to complete..." in output
        assert "[Worker] Cancelling 2 jobs still running; they go back to pending" in output
        assert f"[Worker] Worker {pod['metadata']['name']} stopped" in output

    # The four handed-back jobs wait for the survivor's slots; none is lost.
    release.touch()
    with jobqueue.SyncQueue(database_url) as queue:
        waiting.eventually_sync(
            lambda: queue.get_queue_stats()["done"] == len(held), timeout=60, what="all done"
        )
        for job in held:
            finished = queue.get_job_status(job.id)
            assert finished is not None
            assert finished.status == "done"


def test_deleting_the_deployment_collects_its_replicaset_and_pods(
    kube: kubectl.Kube, database_url: str
) -> None:
    pods = deploy_workers(kube, database_url, 2)
    [replica_set] = kube.get("replicasets", "--selector", SELECTOR)["items"]
    owner = replica_set["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Deployment", "workers")

    kube.kubectl("delete", "deployment", "workers", "--cascade=background")
    kube.wait_for(
        lambda: not kube.get("replicasets,pods", "--selector", SELECTOR)["items"],
        "the garbage collector to remove the ReplicaSet and its pods",
    )
    for pod in pods:
        assert not process_alive(kubectl.pid(pod))
        assert "[Worker] Received SIGTERM" in kube.pod_log(pod)


def restricted_pod(name: str, security_context: Json) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "ghcr.io/jobqueue/jobqueue-worker:test",
                    "args": ["--help"],
                    "securityContext": security_context,
                }
            ]
        },
    }


def test_podsecurity_restricted_rejects_a_noncompliant_pod(kube: kubectl.Kube) -> None:
    kube.kubectl(
        "label", "namespace", kube.namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    rejected = kube.apply(restricted_pod("root", {"privileged": True}), check=False)
    assert rejected.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in rejected.stderr
    assert "privileged" in rejected.stderr
    compliant = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    accepted = kube.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump(restricted_pod("fine", compliant)),
    )
    assert "pod/fine created (server dry run)" in accepted.stdout


def crd(rule: str) -> Json:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "celtests.e2e.jobqueue.test"},
        "spec": {
            "group": "e2e.jobqueue.test",
            "scope": "Namespaced",
            "names": {"plural": "celtests", "singular": "celtest", "kind": "CelTest"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "minReplicas": {"type": "integer"},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": rule, "message": "min must not exceed max"}
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_a_crd_with_a_bad_cel_rule_is_rejected(kube: kubectl.Kube) -> None:
    rejected = kube.apply(crd("self.minReplicas <= self.maxReplicas +"), check=False)
    assert rejected.returncode != 0
    assert "x-kubernetes-validations[0].rule" in rejected.stderr
    assert "compilation failed" in rejected.stderr
    # A good rule is accepted and then enforced on the custom resources.
    kube.apply(crd("self.minReplicas <= self.maxReplicas"))
    try:
        kube.kubectl(
            "wait", "--for=condition=Established", "crd/celtests.e2e.jobqueue.test", timeout=60
        )
        resource = {
            "apiVersion": "e2e.jobqueue.test/v1",
            "kind": "CelTest",
            "metadata": {"name": "bad"},
            "spec": {"minReplicas": 5, "maxReplicas": 2},
        }
        refused = kube.apply(resource, check=False)
        assert refused.returncode != 0
        assert "min must not exceed max" in refused.stderr
    finally:
        kube.kubectl("delete", "crd", "celtests.e2e.jobqueue.test", "--wait=false", check=False)


def test_kill_9_of_a_pod_process_is_a_container_restart(
    kube: kubectl.Kube, database_url: str
) -> None:
    [pod] = deploy_workers(kube, database_url, 1)
    first = kubectl.pid(pod)
    os.kill(first, signal.SIGKILL)

    def restarted() -> Json | None:
        [current] = kube.pods(SELECTOR)
        status = current["status"]["containerStatuses"][0]
        return current if status["restartCount"] == 1 and kubectl.ready(current) else None

    again = kube.wait_for(restarted, "the container restarted and Ready")
    assert again["metadata"]["uid"] == pod["metadata"]["uid"], "the same pod, not a new one"
    status = again["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert kubectl.pid(again) != first
    assert process_alive(kubectl.pid(again))


def test_helm_installs_upgrades_and_uninstalls_a_worker_chart(
    kube: kubectl.Kube, database_url: str, tmp_path: pathlib.Path
) -> None:
    chart = tmp_path / "workers"
    (chart / "templates").mkdir(parents=True)
    chart_yaml = {
        "apiVersion": "v2",
        "name": "workers",
        "version": "0.1.0",
        "kubeVersion": ">=1.37.0-0",  # checked against the API server's real /version
    }
    (chart / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
    (chart / "values.yaml").write_text("replicas: 2\n")
    manifests = worker_manifests(database_url, 2)
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "REPLICAS"
    template = yaml.safe_dump_all(manifests).replace("REPLICAS", "{{ .Values.replicas }}")
    (chart / "templates" / "workers.yaml").write_text(template)

    kube.helm("install", "workers", str(chart), "--wait", "--timeout=3m")
    assert len(ready_workers(kube, 2)) == 2
    kube.helm("upgrade", "workers", str(chart), "--set", "replicas=1", "--wait", "--timeout=3m")
    ready_workers(kube, 1)
    kube.helm("uninstall", "workers", "--wait", "--timeout=3m")
    kube.wait_for(lambda: not kube.pods(SELECTOR), "the chart's pods to be gone")

    chart_yaml["kubeVersion"] = "<1.30.0"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
    refused = kube.helm("install", "old", str(chart), check=False)
    assert refused.returncode != 0
    assert "incompatible with Kubernetes v1.37" in refused.stderr


ACCOUNT_SCRIPT = """
import asyncio, os
from jobqueue_operator import kube
async def main():
    api = kube.Api()  # the operator's own login: here the kubeconfig the kubelet gave the pod
    namespace = os.environ["POD_NAMESPACE"]
    try:
        pods = await api.call("GET", f"/api/v1/namespaces/{namespace}/pods")
        print("pods:", len(pods["items"]))
        try:
            await api.call("GET", f"/api/v1/namespaces/{namespace}/secrets")
        except kube.ApiError as error:
            print("secrets:", error.status)
    finally:
        await api.close()
asyncio.run(main())
"""


def test_a_pod_acts_with_its_service_accounts_rbac(kube: kubectl.Kube) -> None:
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader-reads-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": kube.namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "reader"},
            "spec": {
                "serviceAccountName": "reader",
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.11",
                        "command": ["python", "-c", ACCOUNT_SCRIPT],
                        "env": [
                            {
                                "name": "POD_NAMESPACE",
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                            }
                        ],
                    }
                ],
            },
        },
    )

    def finished() -> Json | None:
        pod = kube.get("pod", "reader")
        return pod if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    pod = kube.wait_for(finished, "the reader pod to finish")
    output = kube.pod_log(pod)
    assert pod["status"]["phase"] == "Succeeded", output
    assert "pods: 1" in output  # itself
    assert "secrets: 403" in output  # its account may not, though the kubelet's admin could


def test_an_init_container_migrates_the_database_before_the_worker_starts(
    kube: kubectl.Kube, empty_database_url: str
) -> None:
    database = {"envFrom": [{"secretRef": {"name": "database"}}]}
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "database"},
            "stringData": {"DATABASE_URL": empty_database_url},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "migrated"},
            "spec": {
                "initContainers": [
                    {
                        "name": "migrate",
                        "image": "jobqueue-worker:test",
                        "args": ["db", "migrate"],
                        **database,
                    }
                ],
                "containers": [
                    {
                        "name": "worker",
                        "image": "jobqueue-worker:test",
                        "args": ["worker", "--metrics-port", "9090"],
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": 9090},
                            "periodSeconds": 1,
                        },
                        **database,
                    }
                ],
            },
        },
    )

    def migrated_and_ready() -> Json | None:
        pod = kube.get("pod", "migrated")
        return pod if kubectl.ready(pod) else None

    pod = kube.wait_for(migrated_and_ready, "the worker Ready after the migration")
    [migrate] = pod["status"]["initContainerStatuses"]
    assert migrate["state"]["terminated"]["reason"] == "Completed"
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Initialized"] == "True"
    with jobqueue.SyncQueue(empty_database_url) as queue:
        queued = queue.enqueue_job("jobqueue.noop", {})

        def done() -> bool:
            found = queue.get_job_status(queued.id)
            return found is not None and found.status == "done"

        waiting.eventually_sync(done, what="the job done by the worker")


def test_a_failing_init_container_fails_a_pod_that_never_restarts(kube: kubectl.Kube) -> None:
    never_started = {"name": "main", "image": "python", "command": ["python", "-c", "pass"]}
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "doomed"},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [
                    {
                        "name": "fail",
                        "image": "python",
                        "command": ["python", "-c", "raise SystemExit(3)"],
                    }
                ],
                "containers": [never_started],
            },
        }
    )

    def failed() -> Json | None:
        pod = kube.get("pod", "doomed")
        return pod if pod["status"].get("phase") == "Failed" else None

    pod = kube.wait_for(failed, "the pod to fail")
    [init] = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 3
    [main] = pod["status"]["containerStatuses"]
    assert main["state"]["waiting"]["reason"] == "PodInitializing"


# Answers GET /<name> with 500 while the file $HOME/<name> exists, else 200.
PROBED_SERVER = """
import http.server, os, pathlib
home = pathlib.Path(os.environ["HOME"])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if (home / self.path.strip("/")).exists() else 200)
        self.end_headers()
http.server.HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


def test_readiness_and_liveness_probes(kube: kubectl.Kube) -> None:
    def probe(path: str) -> Json:
        return {
            "httpGet": {"path": path, "port": 8080},
            "initialDelaySeconds": 1,
            "periodSeconds": 1,
            "failureThreshold": 2,
        }

    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probed"},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {
                        "name": "main",
                        "image": "python",
                        "command": ["python", "-c", PROBED_SERVER],
                        "readinessProbe": probe("/unready"),
                        "livenessProbe": probe("/dead"),
                    }
                ],
            },
        }
    )

    def pod_when(condition: typing.Callable[[Json], bool]) -> typing.Callable[[], Json | None]:
        def check() -> Json | None:
            pod = kube.get("pod", "probed")
            return (
                pod if pod.get("status", {}).get("containerStatuses") and condition(pod) else None
            )

        return check

    def restarts(pod: Json) -> int:
        return int(pod["status"]["containerStatuses"][0]["restartCount"])

    pod = kube.wait_for(pod_when(kubectl.ready), "Ready")
    home = kube.pod_folder(pod)

    (home / "unready").touch()  # readiness fails: not Ready, and not restarted
    pod = kube.wait_for(pod_when(lambda p: not kubectl.ready(p)), "not Ready")
    assert restarts(pod) == 0
    (home / "unready").unlink()
    kube.wait_for(pod_when(kubectl.ready), "Ready again")

    (home / "dead").touch()  # liveness fails: SIGTERM, then a restart
    pod = kube.wait_for(pod_when(lambda p: restarts(p) == 1), "a restart")
    (home / "dead").unlink()
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 128 + signal.SIGTERM
    kube.wait_for(pod_when(lambda p: kubectl.ready(p) and restarts(p) == 1), "Ready after it")


STUBBORN = """
import signal
import time
signal.signal(signal.SIGTERM, lambda signum, frame: print("SIGTERM ignored", flush=True))
print("started", flush=True)
while True:
    signal.pause()
"""


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(
    kube: kubectl.Kube,
) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stubborn"},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {"name": "main", "image": "python", "command": ["python", "-c", STUBBORN]}
                ],
            },
        }
    )
    kube.kubectl("wait", "--for=condition=Ready", "pod/stubborn", "--timeout=60s", timeout=70)
    pod = kube.get("pod", "stubborn")
    kube.wait_for(lambda: "started" in kube.pod_log(pod), "the process to start")
    began = time.monotonic()
    kube.kubectl("delete", "pod", "stubborn", "--wait=true", "--timeout=60s", timeout=70)
    assert time.monotonic() - began >= 2, "deleted before the grace period was over"
    assert not kube.kubectl("get", "pod", "stubborn", "--ignore-not-found").stdout
    assert not process_alive(kubectl.pid(pod))
    assert "SIGTERM ignored" in kube.pod_log(pod)
