"""The Helm chart on the real control plane (issue 12): ``helm install`` of ``charts/jobqueue``,
a ``JobQueue`` applied with ``kubectl apply -f`` whose workers drain a burst, ``helm test``,
``helm upgrade`` rolling the operator, ``helm uninstall`` leaving nothing of the release; and
the web UI of ``ui.enabled`` (``jobqueue ui``), asking for its tokens.

The operator is the chart's own pod, run by the process kubelet (image
``*jobqueue-operator*``: ``python -m jobqueue_operator``) with a token of the chart's
ServiceAccount, so only the chart's RBAC lets it act. The namespace enforces PodSecurity
``restricted``: a pod of the chart or of the operator that breaks it is never admitted.
There is no Service networking here, so ``helm test`` is pointed at the operator pod's IP
through the chart's ``tests.url``.

Run by ``make e2e`` (marker ``cluster``); the times it measures are in the run's summary.
"""

from __future__ import annotations

import collections.abc
import json
import pathlib
import time
import typing

import operator_rig as rig
import pytest
import ui_rig
import yaml

import jobqueue
from cluster import control_plane, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

Json = kubectl.Json
Measure = collections.abc.Callable[[str, float], None]
CHART: typing.Final = control_plane.TESTS_DIR.parent / "charts" / "jobqueue"
CRD: typing.Final = "jobqueues.jobqueue.dev"
OPERATOR_IMAGE: typing.Final = "registry.example/jobqueue-operator"
# The process kubelet runs an image named like the worker's as the virtualenv's `jobqueue`.
UI_IMAGE: typing.Final = "registry.example/jobqueue-worker"
RECONCILE_TIMEOUT: typing.Final = "JOBQUEUE_OPERATOR_RECONCILE_TIMEOUT"
# What may stay in the namespace after `helm uninstall`: not the release's, and not made
# for it by the operator. The user's database Secret, the namespace's own ServiceAccount,
# and the Events that tell what happened.
NOT_THE_RELEASES: typing.Final = {
    "Secret/" + rig.SECRET,
    "ServiceAccount/default",
    "ConfigMap/kube-root-ca.crt",
}
EVENT_KINDS: typing.Final = {"Event"}


def operator_pods(kube: kubectl.Kube, release: str) -> list[Json]:
    return kube.pods(f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator")


def the_ready_operator(kube: kubectl.Kube, release: str) -> Json:
    """The operator's one pod, once it is Ready and no other (an old one going) is left."""

    def one_ready() -> Json | None:
        pods = operator_pods(kube, release)
        if len(pods) == 1 and not pods[0]["metadata"].get("deletionTimestamp"):
            return pods[0] if kubectl.ready(pods[0]) else None
        return None

    return typing.cast(Json, kube.wait_for(one_ready, "one Ready operator pod"))


def environment(pod: Json) -> dict[str, str]:
    [container] = pod["spec"]["containers"]
    return {entry["name"]: entry.get("value", "") for entry in container.get("env", [])}


def drain_a_burst(kube: kubectl.Kube, database_url: str, name: str, count: int) -> list[str]:
    """Enqueues ``count`` jobs; waits until the workers ran each exactly once. Returns the
    ``kubectl get jq`` table as it was while jobs ran on more than one worker."""
    before = {row[0] for row in rig.runs(database_url)}
    with jobqueue.SyncQueue(database_url) as queue:
        burst = queue.enqueue_jobs(jobqueue.NewJob("op.work", {"pause": 0.5}) for _ in range(count))

    def busy() -> list[str] | None:
        table = kube.kubectl("get", "jq", name).stdout.splitlines()
        row = dict(zip(table[0].split(), table[1].split(), strict=True))
        return table if int(row["RUNNING"] or 0) > 0 and int(row["REPLICAS"] or 0) > 1 else None

    table = kube.wait_for(busy, f"{name}'s status: jobs running on the scaled-up workers")
    ids = {job.id for job in burst}

    def drained() -> bool:
        return ids <= {row[0] for row in rig.runs(database_url)}

    kube.wait_for(drained, f"the {count} jobs done", timeout=120)
    done = [row for row in rig.runs(database_url) if row[0] not in before]
    assert sorted(row[0] for row in done) == sorted(ids), "each job of the burst ran once"
    assert {row[2] for row in done} == {1}, "no job ran twice"
    assert len({row[1] for row in done}) > 1, "the burst was shared between the workers"
    return typing.cast(list[str], table)


def leftovers(kube: kubectl.Kube) -> list[str]:
    """Every object of every namespaced type that can be listed, in the test's namespace,
    but for those the release never had."""
    kinds = kube.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name")
    found = kube.get(",".join(kinds.stdout.split()))["items"]
    named = (f"{item['kind']}/{item['metadata']['name']}" for item in found)
    return sorted(
        name
        for name in named
        if name not in NOT_THE_RELEASES and name.split("/")[0] not in EVENT_KINDS
    )


def uninstall_leaving_nothing(kube: kubectl.Kube, release: str) -> float:
    """``helm uninstall``, then a wait until nothing of the release is left in the namespace
    (the garbage collector may still be at work when helm returns); how long it all took."""
    began = time.monotonic()
    kube.helm("uninstall", release, "--wait", "--timeout=120s")
    try:
        kube.wait_for(lambda: not leftovers(kube), "nothing of the release left", timeout=90)
    except AssertionError:
        raise AssertionError(f"left after helm uninstall: {leftovers(kube)}") from None
    return time.monotonic() - began


def test_helm_install_a_jobqueue_helm_test_upgrade_and_uninstall(
    kube: kubectl.Kube, database_url: str, tmp_path: pathlib.Path, measure: Measure
) -> None:
    namespace = kube.namespace
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # ClusterRoles are cluster-wide: a release name of the test's own.
    release = "jq-" + namespace.removeprefix("test-")
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": OPERATOR_IMAGE, "tag": "test"},
                # Only this namespace: the operators of other tests must not meet this one.
                "operator": {"namespaces": [namespace], "reconcileTimeoutSeconds": 60},
            }
        )
    )

    # --- helm install ---------------------------------------------------------------------
    began = time.monotonic()
    installed = rig.install_chart(kube, release, values)
    first = the_ready_operator(kube, release)
    measure("helm install --wait -> the chart's operator pod Ready", time.monotonic() - began)
    print(installed.stdout)
    account = f"{release}-jobqueue-operator"
    assert first["spec"]["serviceAccountName"] == account
    assert environment(first)["JOBQUEUE_OPERATOR_NAMESPACES"] == namespace
    # The pod acts with its ServiceAccount's token, which has the chart's rules and no more.
    can = rights(kube, f"system:serviceaccount:{namespace}:{account}")
    assert can("patch", "jobqueues.jobqueue.dev")
    assert can("patch", "deployments.apps")
    assert not can("delete", "deployments.apps")
    assert not can("list", "secrets")
    crd = admin(kube).get("crd", CRD)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # --- kubectl apply -f of a JobQueue, a burst drained ----------------------------------
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    manifest = tmp_path / "jobqueue.yaml"
    manifest.write_text(
        yaml.safe_dump(
            rig.jobqueue_manifest("books", scaling={"maxReplicas": 3, "targetJobsPerReplica": 5}),
            sort_keys=False,
        )
    )
    kube.kubectl("apply", "-f", str(manifest))
    rig.wait_reconciled(kube, "books")
    began = time.monotonic()
    table = drain_a_burst(kube, database_url, "books", 60)
    measure("a burst of 60 jobs of 0.5 s -> all done (chart's operator)", time.monotonic() - began)
    print("kubectl get jq, while the burst ran:\n" + "\n".join(table))
    assert table[0].split()[:7] == [
        "NAME",
        "READY",
        "PENDING",
        "RUNNING",
        "FAILED",
        "PAUSED",
        "REPLICAS",
    ]
    assert "Scaled " in kube.pod_log(first)

    # --- helm upgrade with a changed value rolls the operator -------------------------------
    began = time.monotonic()
    kube.helm(
        "upgrade",
        release,
        str(CHART),
        "--reuse-values",
        "--set",
        "operator.reconcileTimeoutSeconds=90",
        "--wait",
        "--timeout=120s",
    )
    second = the_ready_operator(kube, release)
    measure("helm upgrade --wait -> the new operator pod Ready", time.monotonic() - began)
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    hash_label = "pod-template-hash"
    assert second["metadata"]["labels"][hash_label] != first["metadata"]["labels"][hash_label]
    assert environment(second)[RECONCILE_TIMEOUT] == "90"
    assert environment(first)[RECONCILE_TIMEOUT] == "60"
    # The queue keeps working under the new operator: it scales the workers up again.
    rig.wait_replicas(kube, "books", 0)
    drain_a_burst(kube, database_url, "books", 60)
    assert "Scaled " in kube.pod_log(second)

    # --- helm test --------------------------------------------------------------------------
    # Only the test hook changes: the operator must not roll for it.
    url = f"http://{second['status']['podIP']}:8080/healthz"
    kube.helm("upgrade", release, str(CHART), "--reuse-values", "--set", f"tests.url={url}")
    began = time.monotonic()
    tested = kube.helm("test", release, "--timeout=120s")
    measure("helm test (the hook pod asks the operator's /healthz)", time.monotonic() - began)
    print(tested.stdout)
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout
    [still] = operator_pods(kube, release)
    assert still["metadata"]["uid"] == second["metadata"]["uid"]

    # --- helm uninstall ---------------------------------------------------------------------
    # The JobQueues first, while the operator still runs: it releases its finalizer and the
    # garbage collector removes the workers (README: Install on Kubernetes).
    began = time.monotonic()
    kube.kubectl("delete", "jobqueue", "books", "--timeout=60s")
    measure("kubectl delete jq -> gone (its finalizer released)", time.monotonic() - began)
    kube.wait_for(lambda: rig.deployment(kube, "books") is None, "the workers gone")
    took = uninstall_leaving_nothing(kube, release)
    measure("helm uninstall --wait -> nothing of the release left", took)
    labelled = f"app.kubernetes.io/instance={release}"
    cluster_wide = admin(kube).kubectl(
        "get", "clusterroles,clusterrolebindings", "--selector", labelled, "-o", "name"
    )
    assert cluster_wide.stdout.strip() == ""
    # The CRD stays (helm.sh/resource-policy: keep): deleting it would delete every JobQueue.
    assert admin(kube).get("crd", CRD)["metadata"]["name"] == CRD
    assert "not found" in kube.helm("status", release, check=False).stderr


def admin(kube: kubectl.Kube) -> kubectl.Kube:
    return kubectl.Kube(kube.plane, "default")


def rights(kube: kubectl.Kube, user: str) -> collections.abc.Callable[[str, str], bool]:
    """``can(verb, resource)``: what ``kubectl auth can-i --as`` says of ``user``."""

    def can(verb: str, resource: str) -> bool:
        answer = kube.kubectl("auth", "can-i", verb, resource, f"--as={user}", check=False)
        assert answer.stdout.strip() in ("yes", "no"), answer.stderr
        return answer.stdout.strip() == "yes"

    return can


@pytest.mark.parametrize("operator_running", [True, False], ids=["operator-up", "operator-down"])
def test_the_charts_own_jobqueue_goes_with_the_release(
    kube: kubectl.Kube,
    database_url: str,
    tmp_path: pathlib.Path,
    measure: Measure,
    operator_running: bool,
) -> None:
    """``jobQueue.enabled``: the JobQueue is the release's, and ``helm uninstall`` takes it
    and its workers along. Its pre-delete hook deletes the JobQueue while the operator runs,
    which releases its finalizer; with the operator scaled to zero the hook drops the
    finalizer itself after ``jobQueue.uninstallWaitSeconds``. The CRD is there beforehand
    (``crds.install=false``), so the JobQueue comes with the install itself."""
    admin(kube).kubectl("apply", "-f", str(CHART / "files" / "crd.yaml"))
    admin(kube).kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    namespace = kube.namespace
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    release = "own-" + namespace.removeprefix("test-")
    rig.database_secret(kube, database_url)
    spec = rig.jobqueue_manifest("unused", scaling={"minReplicas": 1})["spec"]
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": OPERATOR_IMAGE, "tag": "test"},
                "operator": {"namespaces": [namespace]},
                "crds": {"install": False},
                "jobQueue": {
                    "enabled": True,
                    "name": "own",
                    "spec": spec,
                    "uninstallWaitSeconds": 60 if operator_running else 3,
                },
            }
        )
    )
    installed = kube.helm(
        "install", release, str(CHART), "--values", str(values), "--wait", "--timeout=120s"
    )
    assert "get jq own" in installed.stdout, installed.stdout
    rig.ready_pods(kube, "own", 1)
    rig.wait_reconciled(kube, "own")
    made = kube.get("jobqueue", "own")
    assert made["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    assert "jobqueue.dev/operator" in made["metadata"]["finalizers"]
    operator = the_ready_operator(kube, release)
    if not operator_running:
        kube.kubectl("scale", "deployment", f"{release}-jobqueue-operator", "--replicas=0")
        kube.wait_for(lambda: not operator_pods(kube, release), "the operator gone")

    took = uninstall_leaving_nothing(kube, release)
    how = "by the operator" if operator_running else "by the hook, no operator"
    measure(f"helm uninstall of the chart's JobQueue, released {how}", took)
    # The hook's pod is gone (deleted once it succeeded); the kubelet kept its log.
    [hook] = (kube.plane.state / "kubelet" / "pods").glob(
        f"{namespace}_{release}-jobqueue-pre-delete_*/delete-jobqueue.log"
    )
    said = hook.read_text()
    assert f"JobQueue {namespace}/own deleted" in said, said
    assert ("its finalizer removed" in said) != operator_running, said
    if operator_running:
        assert f"Stopped watching JobQueue {namespace}/own" in kube.pod_log(operator)


def test_the_ui_of_the_chart_serves_with_its_tokens_only(
    kube: kubectl.Kube, database_url: str, tmp_path: pathlib.Path, measure: Measure
) -> None:
    """``ui.enabled``: the UI's Deployment becomes available in a namespace that enforces
    ``restricted``, and its pod (``jobqueue ui`` with the chart's arguments, run by the process
    kubelet as for a worker image) answers ``/healthz`` without a token and nothing else
    without one: a GET / unauthenticated or with a wrong token gets 401, with the admin or
    the viewer token of the auth Secret (Bearer, or Basic with any user name) the page. The
    tokens and the URL reach the pod by Secret reference only, and its ServiceAccount gives it
    no credentials of the API."""
    namespace = kube.namespace
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    release = "ui-" + namespace.removeprefix("test-")
    rig.database_secret(kube, database_url)
    tokens = ui_rig.tokens_secret(kube)
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": OPERATOR_IMAGE, "tag": "test"},
                "operator": {"namespaces": [namespace]},
                "ui": {
                    "enabled": True,
                    "image": {"repository": UI_IMAGE, "tag": "test"},
                    "database": {"existingSecret": rig.SECRET},
                    "auth": {"existingSecret": ui_rig.SECRET},
                    "redact": ["$.password"],
                },
            }
        )
    )
    began = time.monotonic()
    installed = rig.install_chart(kube, release, values)
    pod = ui_rig.available_pod(kube, release)
    measure("helm install --wait (ui.enabled) -> the UI's pod Ready", time.monotonic() - began)
    deployment = f"{release}-jobqueue-ui"
    assert f"port-forward svc/{deployment}" in installed.stdout, installed.stdout

    ui_rig.check_it_asks_for_tokens(ui_rig.address(pod), tokens)

    # The tokens and the URL are in no object of the release, only their Secrets' names.
    objects = json.dumps(
        [kube.get("deployment", deployment), kube.get("pod", pod["metadata"]["name"])]
    )
    for value in (tokens.admin, tokens.viewer, database_url):
        assert value not in objects
    [container] = pod["spec"]["containers"]
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["JOBQUEUE_UI_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == ui_rig.SECRET
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == rig.SECRET
    # Its ServiceAccount mounts no token: the kubelet made it no credentials of the API.
    assert pod["spec"]["serviceAccountName"] == deployment
    assert not (kube.pod_folder(pod) / "serviceaccount").exists()

    kube.kubectl("delete", "secret", ui_rig.SECRET)
    took = uninstall_leaving_nothing(kube, release)
    measure("helm uninstall --wait (ui.enabled) -> nothing of the release left", took)
