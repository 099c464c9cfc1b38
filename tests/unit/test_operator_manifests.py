"""The objects the operator builds and the manifests in ``deploy/``, without a cluster:
checked against Kubernetes' own schemas (``kubernetes-validate``) and against what the issue
asks of them (PodSecurity ``restricted``, the database URL only from a Secret, RBAC without
wildcards). The e2e tests apply the same objects to the real control plane."""

from __future__ import annotations

import copy
import pathlib
import typing

import kubernetes_validate
import pytest
import yaml

from jobqueue import settings
from jobqueue_operator import manifests

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = "1.37"
Json = dict[str, typing.Any]

OWNER = manifests.Owner(
    name="books", namespace="library", uid="0a1b2c3d-0000-4000-8000-000000000001"
)
SPEC: Json = {
    "database": {"secretRef": {"name": "jobqueue-db", "key": "url"}},
    "queue": "books",
    "worker": {
        "image": "registry.example/jobqueue-worker:1.0",
        "concurrency": 4,
        "jobTypes": ["parseBook", "embedBook"],
        "terminationGracePeriodSeconds": 60,
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
        "env": [
            {"name": "JOBQUEUE_LOG_FORMAT", "value": "json"},
            {"name": "JOBQUEUE_HEARTBEAT_INTERVAL", "value": "5"},
        ],
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccountName": "books-worker",
        "podAnnotations": {"example.com/team": "reading"},
    },
    "scaling": {"minReplicas": 0, "maxReplicas": 10},
    "staleJobTimeoutSeconds": 120,
}


def documents(name: str) -> list[Json]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def env_of(deployment: Json) -> dict[str, Json]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry for entry in container["env"]}


def test_the_worker_deployment_is_valid_kubernetes() -> None:
    deployment = manifests.worker_deployment(OWNER, SPEC, replicas=3)
    kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    kubernetes_validate.validate(manifests.metrics_service(OWNER), KUBERNETES, strict=True)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["name"] == "books-workers"
    assert deployment["metadata"]["namespace"] == "library"


def test_the_owned_objects_point_at_their_jobqueue() -> None:
    for built in (
        manifests.worker_deployment(OWNER, SPEC, replicas=0),
        manifests.metrics_service(OWNER),
    ):
        [owner] = built["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "jobqueue.dev/v1alpha1",
            "kind": "JobQueue",
            "name": "books",
            "uid": OWNER.uid,
            "controller": True,
        }


def test_the_settings_come_from_the_spec_and_the_url_only_from_the_secret() -> None:
    env = env_of(manifests.worker_deployment(OWNER, SPEC, replicas=1))
    assert env[settings.DATABASE_URL.env] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "jobqueue-db", "key": "url"}},
    }
    assert all("value" not in entry for name, entry in env.items() if name == "DATABASE_URL")
    assert env[settings.WORKER_ID.env]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    values = {name: entry.get("value") for name, entry in env.items()}
    assert values[settings.QUEUE.env] == "books"
    assert values[settings.CONCURRENCY.env] == "4"
    assert values[settings.TYPES.env] == "parseBook,embedBook"
    assert values[settings.METRICS_PORT.env] == str(manifests.METRICS_PORT)
    assert values[settings.STALE_THRESHOLD.env] == "120"
    assert values[settings.GRACE_TIMEOUT.env] == "55", "5 s before the kubelet's SIGKILL"
    # The spec's env replaces a derived variable rather than repeating it (a duplicate
    # name would make server-side apply fail), and adds its own.
    assert values[settings.HEARTBEAT_INTERVAL.env] == "5"
    assert values["JOBQUEUE_LOG_FORMAT"] == "json"
    names = [entry["name"] for entry in env.values()]
    assert len(names) == len(set(names))
    # Every JOBQUEUE_ variable the operator sets is a real setting of the worker.
    known = {setting.env for setting in settings.CORE}
    assert {name for name in names if name.startswith("JOBQUEUE_")} - {
        "JOBQUEUE_LOG_FORMAT"
    } <= known


def test_a_short_stale_timeout_gets_heartbeats_the_worker_accepts() -> None:
    spec = copy.deepcopy(SPEC)
    spec["staleJobTimeoutSeconds"] = 3
    spec["worker"]["env"] = []
    values = {
        n: e.get("value") for n, e in env_of(manifests.worker_deployment(OWNER, spec, 1)).items()
    }
    stale = float(values[settings.STALE_THRESHOLD.env])
    heartbeat = float(values[settings.HEARTBEAT_INTERVAL.env])
    assert stale >= 6 * heartbeat


def test_optional_fields_are_left_out_when_not_given() -> None:
    spec = {"database": {"secretRef": {"name": "db"}}, "worker": {"image": "w:1"}}
    deployment = manifests.worker_deployment(OWNER, spec, replicas=0)
    kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & set(pod)
    values = {n: e.get("value") for n, e in env_of(deployment).items()}
    assert settings.TYPES.env not in values
    assert values[settings.QUEUE.env] == "default"
    assert env_of(deployment)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"


def test_the_pod_passes_podsecurity_restricted() -> None:
    pod = manifests.worker_deployment(OWNER, SPEC, replicas=1)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    context = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    # restricted allows only these volume types; /tmp is an emptyDir.
    assert all(set(volume) - {"name"} <= {"emptyDir"} for volume in pod["volumes"])


def test_probes_and_the_metrics_port() -> None:
    [container] = manifests.worker_deployment(OWNER, SPEC, replicas=1)["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["args"] == ["worker"]
    assert container["ports"] == [
        {"name": "metrics", "containerPort": manifests.METRICS_PORT, "protocol": "TCP"}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    service = manifests.metrics_service(OWNER)
    assert service["spec"]["selector"] == manifests.selector_labels(OWNER)
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_the_pass_through_fields_reach_the_pod() -> None:
    deployment = manifests.worker_deployment(OWNER, SPEC, replicas=1)
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == SPEC["worker"]["tolerations"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["serviceAccountName"] == "books-worker"
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["containers"][0]["resources"] == SPEC["worker"]["resources"]
    assert template["metadata"]["annotations"] == {"example.com/team": "reading"}
    assert template["metadata"]["labels"].items() >= manifests.selector_labels(OWNER).items()


def test_the_deletion_cost_patch() -> None:
    assert manifests.deletion_cost_patch(3) == {
        "metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "3"}}
    }
    assert manifests.label_selector(OWNER) == (
        "app.kubernetes.io/name=jobqueue-worker,app.kubernetes.io/instance=books"
    )


@pytest.mark.parametrize("name", ["crd.yaml", "rbac.yaml", "operator.yaml", "peering.yaml"])
def test_the_deploy_manifests_are_valid_kubernetes(name: str) -> None:
    for document in documents(name):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_rbac_has_no_wildcards() -> None:
    roles = [
        doc
        for name in ("rbac.yaml", "peering.yaml")
        for doc in documents(name)
        if doc["kind"] == "ClusterRole"
    ]
    for rule in (rule for role in roles for rule in role["rules"]):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not {"delete", "deletecollection", "update", "*"} & set(rule["verbs"]), rule
    secrets = [rule for rule in roles[0]["rules"] if "secrets" in rule["resources"]]
    assert [rule["verbs"] for rule in secrets] == [["get"]], "secrets: read one, never list"


def test_the_operator_deployment_is_restricted() -> None:
    [deployment] = documents("operator.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"].startswith("registry.example/jobqueue-operator:")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_crd_names_columns_and_example() -> None:
    [crd] = documents("crd.yaml")
    assert crd["spec"]["group"] == "jobqueue.dev"
    assert crd["spec"]["names"]["shortNames"] == ["jq"]
    [version] = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Pending", "Running", "Failed", "Paused", "Replicas", "Age"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def check(value: typing.Any, node: Json, path: str) -> None:
        """The example's fields exist in the schema (a typo would be pruned silently)."""
        if node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                assert key in node["properties"], f"{path}.{key} is not in the CRD"
                check(item, node["properties"][key], f"{path}.{key}")
        elif isinstance(value, list):
            for item in value:
                check(item, node["items"], f"{path}[]")

    [example] = documents("example-jobqueue.yaml")
    check(example["spec"], schema, "spec")
    for field in schema["required"]:
        assert field in example["spec"]
