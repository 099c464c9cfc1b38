"""The real node (``tests/cluster/node.py``, issue 22): containerd, runc and Debian's CNI
plugins with a kubelet built from the pinned Kubernetes modules, joined to the test control
plane. A restricted pod runs under containerd; stopping the node, or sweeping after a run
that was killed, leaves nothing of it on the machine."""

from __future__ import annotations

import collections.abc
import ipaddress
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import typing

import operator_rig as rig
import psycopg.conninfo
import pytest
import ui_rig
import waiting
import yaml

import jobqueue
from cluster import api, control_plane, images, kubectl, node, versions

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

(OPERATOR,) = [image for image in images.IMAGES if image.repository == "jobqueue-operator"]
HANDLERS_MODULE = "jobqueue_operator_test_handlers.py"
RESTRICTED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(scope="module")
def real_node(
    kube_cluster: control_plane.ControlPlane,
) -> collections.abc.Iterator[node.RealNode]:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the real node needs root (containerd, network namespaces, cgroups)")
        pytest.skip("the real node needs root (containerd, network namespaces, cgroups)")
    keys = kube_cluster.pki
    started = node.RealNode(
        kube_cluster.server,
        keys.ca_cert,
        keys.admin_cert,
        keys.admin_key,
        network=kube_cluster.pod_network,
    )
    with started:
        yield started
        left = Leftovers.of(started.state, started.bridge)
    assert left.still_there() == [], "the stopped node left these behind"


class Leftovers(typing.NamedTuple):
    """What a node has on the machine, found while it runs."""

    state: pathlib.Path
    bridge: str
    netns: list[str]
    processes: list[int]

    @classmethod
    def of(cls, state: pathlib.Path, bridge: str) -> Leftovers:
        pids = node.processes_under(state) + node.container_processes(state)
        return cls(state, bridge, node.netns_of(state), pids)

    def still_there(self) -> list[str]:
        found = []
        if self.state.exists():
            found.append(f"folder {self.state}")
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        if f" {self.bridge}:" in links:
            found.append(f"bridge {self.bridge}")
        mounts = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
        found += [f"mount {line.split()[4]}" for line in mounts if str(self.state) in line]
        found += [f"process {pid}" for pid in self.processes if node.alive(pid)]
        found += [
            f"netns {name}" for name in self.netns if pathlib.Path("/var/run/netns", name).exists()
        ]
        return found


def database_url_for_pods(real_node: node.RealNode, database_url: str) -> str:
    """The test's database as the node's pods reach it: PostgreSQL's socket forwarded to an
    address on the bridge."""
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    host, port = real_node.forward(node.database_address(database_url))
    return f"postgresql://postgres@{host}:{port}/{params['dbname']}"


def pod_of(name: str, node_name: str) -> api.Json:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "pause",
                    "image": "jobqueue.test/pause:1",
                    "imagePullPolicy": "Never",
                    "securityContext": RESTRICTED,
                    "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}},
                }
            ],
        },
    }


def test_a_restricted_pod_runs_under_containerd_on_the_real_kubelet(
    kube_cluster: control_plane.ControlPlane,
    real_node: node.RealNode,
    measure: collections.abc.Callable[[str, float], None],
) -> None:
    client = kube_cluster.client
    info = client.get(f"/api/v1/nodes/{real_node.name}")["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert info["kubeletVersion"] == versions.kubernetes_version()
    measure("real node: start to Ready (containerd, kubelet)", real_node.startup_seconds)
    # The API server as pods see it: on the bridge, its certificate valid for that address.
    seen_from_pods = api.Client(
        api.Credentials(
            real_node.pod_api_server,
            kube_cluster.pki.ca_cert,
            kube_cluster.pki.admin_cert,
            kube_cluster.pki.admin_key,
        )
    )
    assert seen_from_pods.get_text("/readyz") == "ok"
    began = time.monotonic()
    client.create("/api/v1/namespaces/default/pods", pod_of("restricted", real_node.name))
    path = "/api/v1/namespaces/default/pods/restricted"

    def running() -> api.Json:
        pod = client.get(path)
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return pod if statuses[0].get("ready") else {}

    pod: api.Json = waiting.eventually_sync(running, timeout=60, what="the pod ready")
    measure("real node: restricted pod created to Ready", time.monotonic() - began)
    (status,) = pod["status"]["containerStatuses"]
    assert status["containerID"].startswith("containerd://")
    assert ipaddress.IPv4Address(pod["status"]["podIP"]) in real_node.subnet
    client.delete(path)

    def gone() -> bool:
        try:
            client.get(path)
        except api.ApiError as error:
            return error.status == 404
        return False

    waiting.eventually_sync(gone, timeout=60, what="the pod deleted")


def test_a_killed_runs_node_is_swept_and_leaves_nothing(
    kube_cluster: control_plane.ControlPlane, real_node: node.RealNode
) -> None:
    """A node whose owning process is killed, with a pod running (its containerd, kubelet,
    shim and pod live on), is removed by the next sweep: processes, mounts, the pod's
    network namespace, the bridge and the folder; the live node beside it is untouched."""
    keys = kube_cluster.pki
    credentials = [str(keys.ca_cert), str(keys.admin_cert), str(keys.admin_key)]
    pod = json.dumps(pod_of("swept", "swept-node"))
    script = f"""
import json, pathlib, sys
import waiting
from cluster import node
started = node.RealNode({kube_cluster.server!r}, *map(pathlib.Path, {credentials!r}),
                        name="swept-node")
started.start()
started.client.create("/api/v1/namespaces/default/pods", json.loads({pod!r}))
def running():
    pod = started.client.get("/api/v1/namespaces/default/pods/swept")
    return pod.get("status", {{}}).get("phase") == "Running"
waiting.eventually_sync(running, timeout=60, what="the pod running")
print(started.state, started.bridge, flush=True)
sys.stdin.read()  # until the test kills this process
"""
    tests = pathlib.Path(__file__).resolve().parents[1]
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{tests / 'support'}"},
    )
    assert owner.stdout is not None
    line = owner.stdout.readline().split()
    try:
        assert len(line) == 2, "the owner did not start its node and pod"
        left = Leftovers.of(pathlib.Path(line[0]), line[1])
        assert left.netns, "the pod has no network namespace?"
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        assert node.processes_under(left.state), "the killed run's containerd should live on"
        assert node.container_processes(left.state), "and its pod"
        node.sweep()
        assert left.still_there() == []
    finally:
        if owner.poll() is None:
            owner.kill()
        node.sweep()
        kube_cluster.client.delete("/api/v1/namespaces/default/pods/swept?gracePeriodSeconds=0")
        kube_cluster.client.delete("/api/v1/nodes/swept-node")
    assert real_node.ready()
    assert node.processes_under(real_node.state), "the sweep stopped the live node"


def test_the_worker_image_drains_jobs_in_a_pod_and_logs_json(
    kube_cluster: control_plane.ControlPlane,
    real_node: node.RealNode,
    database_url: str,
    measure: collections.abc.Callable[[str, float], None],
) -> None:
    """The core worker image of ``make images``, as a restricted pod on the real node, reaches
    PostgreSQL on the bridge, runs every job once (``--burst``: then it exits 0), and its
    ``kubectl logs`` are JSON lines."""
    (core,) = [image for image in images.IMAGES if image.variant == "core"]
    (built,) = images.built([core])
    real_node.import_images(built.archive)
    with jobqueue.SyncQueue(database_url) as queue:
        jobs = queue.enqueue_jobs(jobqueue.NewJob("jobqueue.noop", {"n": n}) for n in range(40))
    pod = pod_of("worker", real_node.name)
    pod["spec"]["restartPolicy"] = "Never"
    (container,) = pod["spec"]["containers"]
    container.update(
        name="worker",
        image=f"jobqueue.test/{built.reference}",
        args=["worker", "--burst", "--concurrency", "4"],
        env=[
            {"name": "DATABASE_URL", "value": database_url_for_pods(real_node, database_url)},
            {"name": "JOBQUEUE_LOG_FORMAT", "value": "json"},
        ],
        resources={"limits": {"memory": "256Mi", "cpu": "1"}},
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    pod["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    began = time.monotonic()
    client = kube_cluster.client
    client.create("/api/v1/namespaces/default/pods", pod)
    path = "/api/v1/namespaces/default/pods/worker"

    def ended() -> api.Json:
        found = client.get(path)
        return found if found.get("status", {}).get("phase") in ("Succeeded", "Failed") else {}

    finished = waiting.eventually_sync(ended, timeout=120, what="the worker pod to end")
    measure("real node: worker pod created to 40 jobs drained and exited", time.monotonic() - began)
    logs = client.get_text(path + "/log")
    assert finished["status"]["phase"] == "Succeeded", logs[-2000:]
    with jobqueue.SyncQueue(database_url) as queue:
        for job in jobs:
            done = queue.get_job_status(job.id)
            assert done is not None
            assert (done.status, done.attempts) == ("done", 1)
            assert done.locked_by is None
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert lines, "no log lines"
    assert any("Worker" in str(line.get("message", "")) for line in lines), lines[:5]
    client.delete(path)


def test_the_chart_on_the_real_node_scales_a_burst_up_and_back_to_zero(
    kube_cluster: control_plane.ControlPlane,
    real_node: node.RealNode,
    kube: kubectl.Kube,
    database_url: str,
    tmp_path: pathlib.Path,
    measure: collections.abc.Callable[[str, float], None],
) -> None:
    """``helm install`` of the chart with the images of ``make images``, the operator and
    its workers as containers on the real node in a namespace enforcing PodSecurity
    ``restricted``: a JobQueue scales up for a burst, every job runs once, and the queue goes
    back to zero workers."""
    built = images.built([image for image in images.IMAGES if image.variant != ""] + [OPERATOR])
    real_node.import_images(*(item.archive for item in built))
    reference = {item.image: f"jobqueue.test/{item.reference}" for item in built}
    namespace = kube.namespace
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    on_node = {"kubernetes.io/hostname": real_node.name}
    api_host, api_port = real_node.pod_api_server.removeprefix("https://").rsplit(":", 1)
    operator_image, _, operator_tag = reference[OPERATOR].rpartition(":")
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": operator_image, "tag": operator_tag, "pullPolicy": "Never"},
                "operator": {
                    "namespaces": [namespace],
                    "nodeSelector": on_node,
                    # No kube-proxy: the `kubernetes` Service's address leads nowhere.
                    "env": [
                        {"name": "KUBERNETES_SERVICE_HOST", "value": api_host},
                        {"name": "KUBERNETES_SERVICE_PORT", "value": api_port},
                    ],
                },
            }
        )
    )
    release = "jq-node-" + namespace.removeprefix("test-")
    began = time.monotonic()
    rig.install_chart(kube, release, values)
    measure("real node: helm install --wait -> the operator pod Ready", time.monotonic() - began)
    (operator_pod,) = kube.pods("app.kubernetes.io/component=operator")
    assert operator_pod["spec"]["nodeName"] == real_node.name
    rig.database_secret(kube, database_url_for_pods(real_node, database_url))
    (core,) = [image for image in built if image.image.variant == "core"]
    manifest = {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": "burst"},
        "spec": {
            "database": {"secretRef": {"name": rig.SECRET}},
            "worker": {
                "image": reference[core.image],
                "imagePullPolicy": "Never",
                "concurrency": 4,
                "jobTypes": ["jobqueue.noop"],
                "nodeSelector": on_node,
                "terminationGracePeriodSeconds": 10,
                "env": [{"name": "JOBQUEUE_LOG_FORMAT", "value": "json"}],
            },
            "scaling": {
                "maxReplicas": 3,
                "targetJobsPerReplica": 10,
                "pollIntervalSeconds": 1,
                "scaleDownDelaySeconds": 3,
            },
        },
    }
    kube.apply(manifest)
    rig.wait_reconciled(kube, "burst")
    with jobqueue.SyncQueue(database_url) as queue:
        began = time.monotonic()
        burst = queue.enqueue_jobs(jobqueue.NewJob("jobqueue.noop", {"n": n}) for n in range(300))
        scaled = rig.wait_replicas(kube, "burst", 3, timeout=60)
        measure("real node: burst of 300 -> scale-up patch to 3", scaled - began)

        def all_done() -> bool:
            return queue.get_queue_stats(queue="default")["done"] >= len(burst)

        kube.wait_for(all_done, "the burst done", timeout=120)
        drained = time.monotonic()
        for job in burst:
            done = queue.get_job_status(job.id)
            assert done is not None
            assert (done.status, done.attempts) == ("done", 1)
    pods = rig.worker_pods(kube, "burst")
    assert pods, "no worker pod"
    assert {pod["spec"]["nodeName"] for pod in pods} == {real_node.name}
    statuses = [status for pod in pods for status in pod["status"].get("containerStatuses", [])]
    assert all(status["containerID"].startswith("containerd://") for status in statuses)
    stopped = rig.wait_replicas(kube, "burst", 0, timeout=60)
    measure("real node: burst drained -> scale-down patch to 0", stopped - drained)
    kube.wait_for(lambda: not rig.worker_pods(kube, "burst"), "the worker pods gone", timeout=60)

    # --- kill -9 of a busy worker's container on the node: its job rescued, run once ------
    # The test's handlers added to the core image, as a user adds theirs.
    handlers = pathlib.Path(__file__).resolve().parents[1] / "support" / HANDLERS_MODULE
    image = images.with_files(
        core,
        {f"/opt/handlers/{HANDLERS_MODULE}": handlers},
        {"PYTHONPATH": "/opt/handlers", "JOBQUEUE_IMPORTS": handlers.stem},
        name="jobqueue-test-worker:0.1.0",
        into=tmp_path,
    )
    real_node.import_images(image)
    rig.runs_table(database_url)
    manifest["spec"]["worker"].update(
        image="jobqueue.test/jobqueue-test-worker:0.1.0", jobTypes=["op.work"]
    )
    manifest["spec"]["staleJobTimeoutSeconds"] = 3
    kube.apply(manifest)
    with jobqueue.SyncQueue(database_url) as queue:
        job = queue.enqueue_job("op.work", {"pause": 3})

        def running() -> jobqueue.Job | None:
            found = queue.get_job_status(job.id)
            return found if found is not None and found.status == "running" else None

        held = kube.wait_for(running, "the job running on a worker", timeout=60)
        (victim,) = [
            pod
            for pod in rig.worker_pods(kube, "burst")
            if pod["metadata"]["name"] == held.locked_by
        ]
        (status,) = victim["status"]["containerStatuses"]
        pids = node.processes_of_container(status["containerID"].removeprefix("containerd://"))
        assert pids, "the worker container has no process on the node?"
        killed = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

        def rerun() -> bool:
            found = queue.get_job_status(job.id)
            return found is not None and found.attempts == 2 and found.status == "running"

        def done() -> bool:
            found = queue.get_job_status(job.id)
            return found is not None and found.status == "done"

        kube.wait_for(rerun, "the job rescued and running again", timeout=60)
        measure(
            "real node: kill -9 of a busy worker container -> its job running again",
            time.monotonic() - killed,
        )
        kube.wait_for(done, "the job done", timeout=60)
    ran = [row for row in rig.runs(database_url) if row[0] == job.id]
    assert [row[2] for row in ran] == [2], "the killed run never finished; the second did, once"

    # --- a job past the pod's memory limit: OOM-killed each time, then failed, not looped -
    manifest["spec"]["worker"].update(
        jobTypes=["op.work", "op.hog"],
        resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "160Mi"}},
    )
    kube.apply(manifest)
    with jobqueue.SyncQueue(database_url) as queue:
        hog = queue.enqueue_job("op.hog", {"mb": 400}, max_attempts=2)

        def ended() -> jobqueue.Job | None:
            found = queue.get_job_status(hog.id)
            return found if found is not None and found.status in ("done", "failed") else None

        began = time.monotonic()
        failed = kube.wait_for(ended, "the memory hog to end", timeout=180)
        measure(
            "real node: a job past the memory limit -> failed after 2 OOM kills",
            time.monotonic() - began,
        )
        assert failed.status == "failed"
        assert failed.attempts == 2
        assert "stopped responding" in (failed.error or ""), failed.error
        # The worker pods were OOM-killed, and their containers restarted.
        reasons = {
            status.get("lastState", {}).get("terminated", {}).get("reason")
            for pod in rig.worker_pods(kube, "burst")
            for status in pod["status"].get("containerStatuses", [])
        }
        assert "OOMKilled" in reasons, reasons

    # --- a rolling update of the workers while a burst runs: none lost, none run twice ----
    with jobqueue.SyncQueue(database_url) as queue:
        rolling = queue.enqueue_jobs(jobqueue.NewJob("op.work", {"pause": 0.5}) for _ in range(60))
        kube.wait_for(lambda: queue.get_queue_stats()["running"] > 0, "the burst running")
        manifest["spec"]["worker"]["env"].append({"name": "ROLLOUT", "value": "2"})
        kube.apply(manifest)
        ids = {job.id for job in rolling}
        kube.wait_for(
            lambda: ids <= {row[0] for row in rig.runs(database_url)},
            "the burst done through the rollout",
            timeout=180,
        )
    finished = [row for row in rig.runs(database_url) if row[0] in ids]
    assert len(finished) == len(ids), "a job of the burst finished twice"
    kube.wait_for(
        lambda: all(
            {"name": "ROLLOUT", "value": "2"} in pod["spec"]["containers"][0]["env"]
            for pod in rig.live_pods(kube, "burst")
        ),
        "only workers of the new template left",
        timeout=120,
    )

    # --- the operator pod deleted mid-scale: its successor carries on ----------------------
    with jobqueue.SyncQueue(database_url) as queue:
        scaled_down = rig.wait_replicas(kube, "burst", 0, timeout=120)
        assert scaled_down
        began = time.monotonic()
        more = queue.enqueue_jobs(jobqueue.NewJob("op.work", {"pause": 0.2}) for _ in range(100))
        kube.wait_for(
            lambda: (rig.replicas(kube, "burst") or 0) > 0, "the scale-up begun", timeout=60
        )
        kube.kubectl("delete", "pod", operator_pod["metadata"]["name"], "--wait=false")
        ids = {job.id for job in more}
        kube.wait_for(
            lambda: ids <= {row[0] for row in rig.runs(database_url)},
            "the burst done by the new operator's workers",
            timeout=180,
        )
        measure(
            "real node: operator pod deleted mid-scale -> burst of 100 done",
            time.monotonic() - began,
        )
    names = {
        pod["metadata"]["name"]
        for pod in kube.pods("app.kubernetes.io/component=operator")
        if not pod["metadata"].get("deletionTimestamp")
    }
    assert names, "no operator pod"
    assert operator_pod["metadata"]["name"] not in names, "the deleted operator pod lives on"
    assert len([row for row in rig.runs(database_url) if row[0] in ids]) == len(ids)
    rig.wait_replicas(kube, "burst", 0, timeout=120)
    kube.helm("uninstall", release, "--wait", "--timeout=120s")


def test_the_charts_ui_runs_from_the_core_worker_image_on_the_real_node(
    real_node: node.RealNode,
    kube: kubectl.Kube,
    database_url: str,
    tmp_path: pathlib.Path,
    measure: collections.abc.Callable[[str, float], None],
) -> None:
    """``ui.enabled`` with the core worker image of ``make images``, which carries the ``ui``
    extra: the chart's UI as a container on the real node in a namespace enforcing
    ``restricted`` (read-only root, uid 65532, no capabilities, no token of the API) reaches
    PostgreSQL on the bridge, turns Ready on ``/healthz`` and asks for its tokens. The
    operator stays on the process kubelet."""
    (core,) = [image for image in images.IMAGES if image.variant == "core"]
    (built,) = images.built([core])
    real_node.import_images(built.archive)
    repository, _, tag = f"jobqueue.test/{built.reference}".rpartition(":")
    namespace = kube.namespace
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    rig.database_secret(kube, database_url_for_pods(real_node, database_url))
    tokens = ui_rig.tokens_secret(kube)
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                # The operator on the process kubelet: its image names the local program.
                "image": {"repository": "registry.example/jobqueue-operator", "tag": "test"},
                "operator": {"namespaces": [namespace]},
                "ui": {
                    "enabled": True,
                    "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                    "database": {"existingSecret": rig.SECRET},
                    "auth": {"existingSecret": ui_rig.SECRET},
                    "nodeSelector": {"kubernetes.io/hostname": real_node.name},
                },
            }
        )
    )
    release = "ui-node-" + namespace.removeprefix("test-")
    began = time.monotonic()
    rig.install_chart(kube, release, values)
    pod = ui_rig.available_pod(kube, release)
    measure(
        "real node: helm install --wait (ui.enabled) -> the UI pod Ready", time.monotonic() - began
    )
    assert pod["spec"]["nodeName"] == real_node.name
    (status,) = pod["status"]["containerStatuses"]
    assert status["containerID"].startswith("containerd://")
    ui_rig.check_it_asks_for_tokens(ui_rig.address(pod), tokens)
    kube.helm("uninstall", release, "--wait", "--timeout=120s")
