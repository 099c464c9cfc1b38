"""The Helm chart (issue 12): ``helm lint --strict`` and ``helm template`` over several value
sets (defaults, everything on, everything off, custom names), every rendered object valid for
each Kubernetes version the chart supports (``kubernetes-validate --strict``), the values
schema refusing wrong types and unknown keys, selectors without the chart version, the
restricted security context, and the monitoring objects rendered from the one source in
``deploy/``. The chart's RBAC and CRD are compared with ``deploy/`` once the operator
(issue 11) has put them there. The web UI (``ui.enabled``): its Deployment, Service,
ServiceAccount and Ingress only when asked for, its database URL and tokens by Secret
reference only, and no UI without the Secret of its tokens."""

from __future__ import annotations

import collections.abc
import functools
import importlib.util
import json
import pathlib
import tempfile
import typing

import kubernetes_validate
import pytest
import yaml
from deploy_files import (
    CHART,
    DEPLOY,
    environment_without_helm_state,
    helm_binary,
    run,
    venv_tool,
)

from jobqueue_operator import __main__ as operator_main
from jobqueue_operator import settings as operator_settings

# The versions the chart declares (Chart.yaml kubeVersion >=1.30) up to the newest known.
KUBERNETES_VERSIONS = [f"1.{minor}" for minor in range(30, 38)]
CRD_FILE = DEPLOY / "crd.yaml"
RBAC_FILE = DEPLOY / "rbac.yaml"
HAS_CRD = CRD_FILE.is_file()
WAITING_FOR_OPERATOR = "deploy/crd.yaml and deploy/rbac.yaml come with the operator (issue 11)"
# Until deploy/crd.yaml exists, the chart cannot ship the CRD (its template fails loudly
# without it), so the value sets turn it off; test_chart_ships_the_crd says so in every run.
CRD_VALUES: dict[str, typing.Any] = {} if HAS_CRD else {"crds": {"install": False}}

Values = dict[str, typing.Any]
Object = dict[str, typing.Any]

# The web UI is a plugin being written alongside the chart: until its command is there, the
# checks of the chart against its settings and its command are expected failures, listed in
# every run.
HAS_UI = importlib.util.find_spec("jobqueue_ui.cli") is not None
WAITING_FOR_UI = "jobqueue ui comes with the jobqueue_ui plugin (worker/jobqueue_ui/cli.py)"
COMPONENT = "app.kubernetes.io/component"
# Where the UI's secrets come from: Secret references, never values.
UI_SECRET_ENV = ("DATABASE_URL", "JOBQUEUE_UI_ADMIN_TOKEN", "JOBQUEUE_UI_VIEWER_TOKEN")

EXAMPLE_SPEC: Values = {
    "database": {"secretRef": {"name": "jobqueue-db", "key": "url"}},
    "queue": "default",
    "worker": {"image": "registry.example/jobqueue-worker:0.1.0", "concurrency": 4},
    "scaling": {"minReplicas": 0, "maxReplicas": 10, "targetJobsPerReplica": 10},
}

VALUE_SETS: dict[str, Values] = {
    "defaults": {},
    "all-on": {
        "image": {"digest": "sha256:" + "a" * 64},
        "operator": {"replicas": 2, "peering": "jobqueue", "namespaces": ["shop", "books"]},
        "jobQueue": {"enabled": True, "name": "books", "spec": EXAMPLE_SPEC},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "prometheus"},
            "runbookUrlPrefix": "https://git.example/jobqueue/blob/main/",
        },
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "annotations": {"grafana_folder": "jobqueue"},
        },
        "ui": {
            "enabled": True,
            "replicas": 2,
            "image": {"digest": "sha256:" + "b" * 64},
            "auth": {"existingSecret": "jobqueue-ui"},
            "redact": ["$.password", "$..token"],
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                "hosts": ["jobqueue.example.com"],
                "tls": [{"secretName": "jobqueue-ui-tls", "hosts": ["jobqueue.example.com"]}],
            },
        },
    },
    "all-off": {
        "serviceAccount": {"create": False, "name": "existing-operator"},
        "rbac": {"create": False},
        "crds": {"install": False},
        "serviceMonitor": {"enabled": True, "workers": {"enabled": False}},
    },
    "custom": {
        "fullnameOverride": "queues",
        "imagePullSecrets": [{"name": "regcred"}],
        "operator": {
            "metricsPort": 9100,
            "env": [{"name": "JOBQUEUE_LOG_FORMAT", "value": "json"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "podAnnotations": {"example/annotation": "yes"},
        },
        "tests": {"url": "http://127.1.0.5:9100/healthz"},
        "ui": {
            "enabled": True,
            "image": {"repository": "registry.example/jobqueue-worker", "tag": "0.1.0-core"},
            "port": 9000,
            "database": {"existingSecret": "ui-db", "key": "dsn"},
            "auth": {
                "existingSecret": "ui-tokens",
                "adminTokenKey": "admin",
                "viewerTokenKey": "",
            },
            "env": [{"name": "JOBQUEUE_LOG_FORMAT", "value": "json"}],
            "serviceAccount": {"create": False, "name": "existing-ui"},
            "service": {"type": "NodePort", "port": 8000},
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
    },
}

BAD_VALUES: dict[str, Values] = {
    "unknown top-level key": {"replicaCount": 2},
    "unknown nested key": {"operator": {"replica": 2}},
    "replicas as a string": {"operator": {"replicas": "two"}},
    "port out of range": {"operator": {"metricsPort": 70000}},
    "enabled as a string": {"serviceMonitor": {"enabled": "yes"}},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "digest without algorithm": {"image": {"digest": "abc"}},
    "namespaces as a string": {"operator": {"namespaces": "shop"}},
    "label value as a number": {"prometheusRule": {"labels": {"release": 1}}},
    "a token value in the values": {"ui": {"auth": {"adminToken": "s3cret"}}},
    "ui replicas negative": {"ui": {"replicas": -1}},
    "ui port out of range": {"ui": {"port": 0}},
    "ui service type unknown": {"ui": {"service": {"type": "Ingress"}}},
    "ui auth Secret not a name": {"ui": {"auth": {"existingSecret": "UI_Tokens"}}},
    "ui admin token key empty": {"ui": {"auth": {"adminTokenKey": ""}}},
    "ui database key with a slash": {"ui": {"database": {"key": "a/b"}}},
    "ui redact not a JSON path": {"ui": {"redact": ["password"]}},
    "ui redact with a comma": {"ui": {"redact": ["$.a,$.b"]}},
    "ui ingress host a URL": {"ui": {"ingress": {"hosts": ["https://jobqueue.example.com"]}}},
    "ui ingress tls unknown key": {"ui": {"ingress": {"tls": [{"secret": "tls"}]}}},
    "ui ingress hosts a string": {"ui": {"ingress": {"hosts": "jobqueue.example.com"}}},
}


def _merge(base: Values, extra: Values) -> Values:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@functools.cache
def _helm_home() -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-helm-"))


def _helm(*arguments: str, values: Values | None = None) -> tuple[int, str]:
    home = _helm_home()
    command = [helm_binary(), *arguments]
    if values is not None:
        path = home / "values.json"  # JSON is YAML
        path.write_text(json.dumps(values))
        command += ["--values", str(path)]
    done = run(command, env=environment_without_helm_state(home))
    # helm says, on stderr, that it follows the links of files/ to deploy/: not an error.
    noise = "found symbolic link in path"
    stderr = "\n".join(line for line in done.stderr.splitlines() if noise not in line)
    return done.returncode, done.stdout + stderr


# What a cluster whose API server serves JobQueues tells helm (the chart's own JobQueue is
# made only then: see templates/jobqueue.yaml).
SERVED = ("--api-versions", "jobqueue.dev/v1alpha1/JobQueue")


def _rendered(name: str, served: bool = True) -> tuple[Object, ...]:
    return _rendered_values(json.dumps(VALUE_SETS[name]), served)


@functools.cache
def _rendered_values(values_json: str, served: bool = True) -> tuple[Object, ...]:
    """The objects ``helm template`` renders from these values (as JSON: cached by them)."""
    values = _merge(CRD_VALUES, json.loads(values_json))
    capabilities = SERVED if served else ()
    code, output = _helm(
        "template", "jq", str(CHART), "--namespace", "jq-system", *capabilities, values=values
    )
    assert code == 0, output
    return tuple(doc for doc in yaml.safe_load_all(output) if doc)


def _render(values: Values) -> tuple[Object, ...]:
    return _rendered_values(json.dumps(values, sort_keys=True))


def _all_rendered() -> collections.abc.Iterator[tuple[str, Object]]:
    for name in VALUE_SETS:
        for obj in _rendered(name):
            yield name, obj


def _kind(objects: collections.abc.Iterable[Object], kind: str) -> list[Object]:
    return [obj for obj in objects if obj["kind"] == kind]


def _of(objects: collections.abc.Iterable[Object], kind: str, component: str) -> list[Object]:
    """The objects of ``kind`` labelled as ``component`` (operator, ui, pre-delete...)."""
    return [
        obj for obj in _kind(objects, kind) if obj["metadata"]["labels"].get(COMPONENT) == component
    ]


def _pod_specs(objects: collections.abc.Iterable[Object]) -> list[Object]:
    specs = [obj["spec"]["template"]["spec"] for obj in _kind(objects, "Deployment")]
    return specs + [obj["spec"] for obj in _kind(objects, "Pod")]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(name: str) -> None:
    code, output = _helm(
        "lint", "--strict", str(CHART), values=_merge(CRD_VALUES, VALUE_SETS[name])
    )
    assert code == 0, output
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(version: str) -> None:
    checked = 0
    for name, obj in _all_rendered():
        if obj["apiVersion"].startswith(("monitoring.coreos.com/", "jobqueue.dev/")):
            continue  # custom resources: checked against their own schemas below
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {error.message}")
        checked += 1
    assert checked > 20


def test_the_value_sets_render_what_they_ask_for() -> None:
    kinds = {name: sorted(obj["kind"] for obj in _rendered(name)) for name in VALUE_SETS}
    crd = ["CustomResourceDefinition"] if HAS_CRD else []
    base = ["Deployment", "Pod", "Service"]
    rbac = ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    assert kinds["defaults"] == sorted(base + rbac + crd)
    pre_delete = ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    ui = ["Deployment", "Service", "ServiceAccount"]
    assert kinds["all-on"] == sorted(
        [*base, *rbac, *crd, *pre_delete, *ui, "Ingress", "JobQueue", "PrometheusRule"]
        + ["ConfigMap"] * 2
        + ["ServiceMonitor"] * 2
    )
    assert kinds["all-off"] == sorted([*base, "ServiceMonitor"])
    # Its own ServiceAccount is an existing one: the UI's Deployment and Service only.
    assert kinds["custom"] == sorted([*base, *rbac, *crd, "Deployment", "Service"])


def test_the_charts_jobqueue_waits_until_jobqueues_are_served() -> None:
    # On the install that brings the CRD, helm could not map a JobQueue to an API and would
    # refuse the whole release: the JobQueue comes with the next upgrade instead.
    assert not _kind(_rendered("all-on", served=False), "JobQueue")
    (made,) = _kind(_rendered("all-on"), "JobQueue")
    assert made["metadata"]["name"] == "books"


def test_the_charts_jobqueue_is_deleted_by_a_pre_delete_hook_before_the_operator() -> None:
    # helm uninstall deletes the operator first; its finalizer would then hold the JobQueue.
    hooks = [
        obj
        for obj in _rendered("all-on")
        if obj["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"
    ]
    assert sorted(obj["kind"] for obj in hooks) == ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    weight = {
        obj["kind"]: int(obj["metadata"]["annotations"]["helm.sh/hook-weight"]) for obj in hooks
    }
    assert weight["Pod"] > max(weight["Role"], weight["RoleBinding"], weight["ServiceAccount"])
    for obj in hooks:
        policy = obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
        assert "hook-succeeded" in policy, "a hook object left behind by the uninstall"
    (pod,) = _kind(hooks, "Pod")
    (role,) = _kind(hooks, "Role")
    (binding,) = _kind(hooks, "RoleBinding")
    (account,) = _kind(hooks, "ServiceAccount")
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("registry.example/jobqueue-operator:")
    assert container["args"] == ["delete-jobqueue", "books", "--namespace=jq-system", "--wait=60"]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "jq-system"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # That JobQueue and nothing else.
    assert role["rules"] == [
        {
            "apiGroups": ["jobqueue.dev"],
            "resources": ["jobqueues"],
            "resourceNames": ["books"],
            "verbs": ["get", "delete", "patch"],
        }
    ]
    # The command is the operator's own: its parser knows it.
    arguments = operator_main.parser().parse_args(container["args"])
    assert (arguments.name, arguments.namespace, arguments.wait) == ("books", "jq-system", 60.0)
    assert not _kind(_rendered("all-on", served=False), "Role")
    assert not _kind(_rendered("defaults"), "Role")


@pytest.mark.parametrize("case", BAD_VALUES)
def test_the_values_schema_refuses_bad_values(case: str) -> None:
    code, output = _helm("template", "jq", str(CHART), values=_merge(CRD_VALUES, BAD_VALUES[case]))
    assert code != 0
    assert "values don't meet the specifications of the schema" in output, output


def test_every_value_is_in_the_schema_and_documented() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: typing.Any, part: typing.Any, where: str) -> None:
        if not isinstance(node, dict) or "properties" not in part:
            return
        assert part.get("additionalProperties") is False, f"{where or '/'}: unknown keys allowed"
        assert set(node) <= set(part["properties"]), (
            f"{where}: {set(node) - set(part['properties'])}"
        )
        for key, value in node.items():
            walk(value, part["properties"][key], f"{where}/{key}")

    walk(values, schema, "")


def test_selectors_never_carry_the_chart_version() -> None:
    for name, obj in _all_rendered():
        selectors = []
        if obj["kind"] == "Deployment":
            selectors.append(obj["spec"]["selector"]["matchLabels"])
            template = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= template.items()
        if obj["kind"] == "Service":
            selectors.append(obj["spec"]["selector"])
        if obj["kind"] == "ServiceMonitor":
            selectors.append(obj["spec"]["selector"]["matchLabels"])
        for selector in selectors:
            assert "helm.sh/chart" not in selector, name
            assert "app.kubernetes.io/version" not in selector, name


def test_the_operator_service_selects_the_operator_pods() -> None:
    for name in VALUE_SETS:
        objects = _rendered(name)
        (deployment,) = _of(objects, "Deployment", "operator")
        (service,) = _of(objects, "Service", "operator")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]
        assert service["spec"]["ports"][0]["targetPort"] == port["name"]


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    for name in VALUE_SETS:
        for pod in _pod_specs(_rendered(name)):
            context = pod["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["seccompProfile"]["type"] == "RuntimeDefault"
            assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
            for volume in pod.get("volumes", []):
                assert "hostPath" not in volume
            for container in pod["containers"]:
                security = container["securityContext"]
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"]["drop"] == ["ALL"]
                assert security["readOnlyRootFilesystem"] is True
                assert "ports" not in container or all(
                    "hostPort" not in port for port in container["ports"]
                )


def test_the_operator_reads_only_settings_it_declares() -> None:
    declared = {setting.env for setting in operator_settings.SETTINGS}
    for name in VALUE_SETS:
        (deployment,) = _of(_rendered(name), "Deployment", "operator")
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        chart_env = {
            entry["name"] for entry in env if entry["name"].startswith("JOBQUEUE_OPERATOR")
        }
        assert chart_env <= declared, name
    (deployment,) = _of(_rendered("all-on"), "Deployment", "operator")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env[operator_settings.NAMESPACES.env] == "shop,books"
    assert env[operator_settings.PEERING.env] == "jobqueue"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    (standalone,) = _of(_rendered("defaults"), "Deployment", "operator")
    assert standalone["spec"]["strategy"]["type"] == "Recreate"
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/jobqueue-operator:0.1.0@sha256:" + "a" * 64


def test_the_helm_test_pod_asks_the_operators_healthz() -> None:
    objects = _rendered("defaults")
    (pod,) = _kind(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # `helm uninstall` leaves hook objects: a passing test's pod must not outlive the test.
    policy = pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert "hook-succeeded" in policy
    (service,) = _kind(objects, "Service")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    port = service["spec"]["ports"][0]["port"]
    assert (
        env["HEALTHZ_URL"] == f"http://{service['metadata']['name']}.jq-system.svc:{port}/healthz"
    )
    (custom,) = _kind(_rendered("custom"), "Pod")
    assert custom["spec"]["containers"][0]["env"][0]["value"] == "http://127.1.0.5:9100/healthz"
    # The script it runs is valid Python.
    compile(pod["spec"]["containers"][0]["args"][0], "helm-test", "exec")


def test_the_prometheus_rule_is_deploy_rules_yaml() -> None:
    source = yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text())
    (rule,) = _kind(_rendered("all-on"), "PrometheusRule")
    prefix = VALUE_SETS["all-on"]["prometheusRule"]["runbookUrlPrefix"]
    for group in source["groups"]:
        for alert in group["rules"]:
            alert["annotations"]["runbook_url"] = prefix + alert["annotations"]["runbook_url"]
    assert rule["spec"]["groups"] == source["groups"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_the_dashboards_are_deploy_grafana() -> None:
    maps = _kind(_rendered("all-on"), "ConfigMap")
    shipped = {key: value for cm in maps for key, value in cm["data"].items()}
    files = {path.name: path.read_text() for path in (DEPLOY / "grafana").glob("*.json")}
    assert shipped.keys() == files.keys()
    for key, text in shipped.items():
        assert json.loads(text) == json.loads(files[key])
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "jobqueue"}


def test_the_service_monitors_scrape_operator_and_workers() -> None:
    monitors = {m["metadata"]["name"]: m for m in _kind(_rendered("all-on"), "ServiceMonitor")}
    operator = monitors["jq-jobqueue-operator"]["spec"]
    # The operator's series name the JobQueue's namespace: keep it, not the scrape target's.
    assert operator["endpoints"][0]["honorLabels"] is True
    (service,) = _of(_rendered("all-on"), "Service", "operator")
    assert operator["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    workers = monitors["jq-jobqueue-workers"]["spec"]
    assert workers["namespaceSelector"] == {"any": True}
    assert workers["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "jobqueue-worker",
        "app.kubernetes.io/managed-by": "jobqueue-operator",
    }
    (relabel,) = workers["endpoints"][0]["relabelings"]
    assert relabel["targetLabel"] == "jobqueue"


def test_the_chart_links_its_files_to_deploy() -> None:
    # One source: files/ holds links into deploy/, never copies.
    for path in (CHART / "files").rglob("*"):
        if path.is_file():
            assert path.is_symlink(), f"{path} must be a link into deploy/"
            assert DEPLOY in path.resolve().parents


@pytest.mark.xfail(not HAS_CRD, reason=WAITING_FOR_OPERATOR, strict=True)
def test_chart_ships_the_crd() -> None:
    (crd,) = _kind(_rendered("defaults"), "CustomResourceDefinition")
    source = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


@pytest.mark.xfail(not RBAC_FILE.is_file(), reason=WAITING_FOR_OPERATOR, strict=True)
def test_chart_rbac_is_deploy_rbac() -> None:
    documents = list(yaml.safe_load_all(RBAC_FILE.read_text()))
    (source,) = [doc for doc in documents if doc and doc["kind"] == "ClusterRole"]
    (role,) = _kind(_rendered("defaults"), "ClusterRole")
    assert role["rules"] == source["rules"]


def test_chart_rbac_grants_the_peering_rights_only_with_peering() -> None:
    # kopf peering watches the peering object and patches its own entry in it: refused,
    # the replicas would never agree on one active operator.
    documents = list(yaml.safe_load_all((DEPLOY / "peering.yaml").read_text()))
    (peering,) = [doc for doc in documents if doc and doc["kind"] == "ClusterRole"]
    (standalone,) = _kind(_rendered("defaults"), "ClusterRole")
    assert not [rule for rule in standalone["rules"] if "kopf.dev" in rule["apiGroups"]]
    assert VALUE_SETS["all-on"]["operator"]["peering"]
    (peered,) = _kind(_rendered("all-on"), "ClusterRole")
    assert peered["rules"] == standalone["rules"] + peering["rules"]


def _crd_schema() -> Object:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: Object = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.xfail(not HAS_CRD, reason=WAITING_FOR_OPERATOR, strict=True)
def test_good_jobqueues_validate_against_the_crd_and_bad_ones_do_not() -> None:
    import jsonschema  # check-jsonschema's engine

    validator = jsonschema.Draft7Validator(_crd_schema())
    good = [yaml.safe_load((DEPLOY / "example-jobqueue.yaml").read_text())]
    good += _kind(_rendered("all-on"), "JobQueue")
    for resource in good:
        errors = [error.message for error in validator.iter_errors(resource)]
        assert not errors, f"{resource['metadata']['name']}: {errors}"
    no_database = {**good[0], "spec": {k: v for k, v in good[0]["spec"].items() if k != "database"}}
    wrong_type = {**good[0], "spec": {**good[0]["spec"], "worker": {"concurrency": "four"}}}
    for resource in (no_database, wrong_type):
        assert list(validator.iter_errors(resource))


# --- the web UI (ui.enabled) --------------------------------------------------------------------


def _ui_objects(objects: collections.abc.Iterable[Object]) -> list[Object]:
    return [obj for obj in objects if obj["metadata"].get("labels", {}).get(COMPONENT) == "ui"]


def _ui_container(objects: collections.abc.Iterable[Object]) -> Object:
    (deployment,) = _of(objects, "Deployment", "ui")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return typing.cast(Object, container)


def _secret_refs(container: Object) -> dict[str, Object]:
    """``name: secretKeyRef`` of each environment variable the container takes from a Secret."""
    return {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]
        for entry in container["env"]
        if "secretKeyRef" in entry.get("valueFrom", {})
    }


def test_the_ui_is_rendered_only_when_enabled() -> None:
    for name in ("defaults", "all-off"):
        assert _ui_objects(_rendered(name)) == [], name
    # Its other values alone make nothing of it.
    configured = {
        "ui": {
            "auth": {"existingSecret": "jobqueue-ui"},
            "ingress": {"enabled": True, "hosts": ["jobqueue.example.com"]},
        }
    }
    assert _ui_objects(_render(configured)) == []
    assert _ui_objects(_rendered("all-on")), "all-on renders the UI"


def test_the_ui_refuses_to_render_without_the_secret_of_its_tokens() -> None:
    code, output = _helm(
        "template", "jq", str(CHART), values=_merge(CRD_VALUES, {"ui": {"enabled": True}})
    )
    assert code != 0
    assert "ui.enabled needs ui.auth.existingSecret" in output, output
    assert "kubectl create secret generic" in output, "the message says how to make one"


def test_the_ui_takes_its_database_url_and_tokens_by_secret_reference_only() -> None:
    for name in ("all-on", "custom"):
        objects = _rendered(name)
        # Nothing of the UI carries data: no Secret, no ConfigMap.
        assert {obj["kind"] for obj in _ui_objects(objects)} <= {
            "Deployment",
            "Service",
            "ServiceAccount",
            "Ingress",
        }
        container = _ui_container(objects)
        for entry in container["env"]:
            if entry["name"] in UI_SECRET_ENV:
                assert "value" not in entry, f"{name}: {entry['name']} as a value"
    refs = _secret_refs(_ui_container(_rendered("all-on")))
    # all-on's database: its JobQueue's, the workers' own.
    assert refs == {
        "DATABASE_URL": {"name": "jobqueue-db", "key": "url"},
        "JOBQUEUE_UI_ADMIN_TOKEN": {"name": "jobqueue-ui", "key": "admin-token"},
        "JOBQUEUE_UI_VIEWER_TOKEN": {
            "name": "jobqueue-ui",
            "key": "viewer-token",
            "optional": True,
        },
    }
    # Keys of the values' choosing; an empty viewer key leaves the read-only role out.
    assert _secret_refs(_ui_container(_rendered("custom"))) == {
        "DATABASE_URL": {"name": "ui-db", "key": "dsn"},
        "JOBQUEUE_UI_ADMIN_TOKEN": {"name": "ui-tokens", "key": "admin"},
    }


def test_the_ui_database_secret_defaults_to_the_workers() -> None:
    def database(values: Values) -> Object:
        return _secret_refs(_ui_container(_render(values)))["DATABASE_URL"]

    ui: Values = {"enabled": True, "auth": {"existingSecret": "jobqueue-ui"}}
    spec = {**EXAMPLE_SPEC, "database": {"secretRef": {"name": "books-db", "key": "dsn"}}}
    with_queue = {"ui": ui, "jobQueue": {"enabled": True, "spec": spec}}
    assert database(with_queue) == {"name": "books-db", "key": "dsn"}
    # The CRD's default key.
    spec = {**EXAMPLE_SPEC, "database": {"secretRef": {"name": "books-db"}}}
    assert database({**with_queue, "jobQueue": {"enabled": True, "spec": spec}}) == {
        "name": "books-db",
        "key": "url",
    }
    # No JobQueue of the chart's: the Secret of deploy/example-jobqueue.yaml and the notes.
    assert database({"ui": ui}) == {"name": "jobqueue-db", "key": "url"}
    # A role of the UI's own.
    own = {**ui, "database": {"existingSecret": "ui-db", "key": "dsn"}}
    assert database({**with_queue, "ui": own}) == {"name": "ui-db", "key": "dsn"}


def test_the_ui_deployment_runs_jobqueue_ui_on_all_addresses_with_probes() -> None:
    for name, port in (("all-on", 8080), ("custom", 9000)):
        objects = _rendered(name)
        (deployment,) = _of(objects, "Deployment", "ui")
        pod = deployment["spec"]["template"]["spec"]
        container = _ui_container(objects)
        # The worker image's entry point is `jobqueue`.
        assert container["args"] == ["ui", "--host", "0.0.0.0", "--port", str(port)]
        assert container.get("command") is None
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
        assert container["resources"]["limits"]["memory"]
        # No Kubernetes API: no token in the pod; no Service links (JOBQUEUE_UI_PORT=tcp://...).
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        # Its own ServiceAccount, not the operator's.
        (operator,) = _of(objects, "Deployment", "operator")
        account = pod["serviceAccountName"]
        assert account != operator["spec"]["template"]["spec"]["serviceAccountName"]
        assert deployment["spec"]["selector"]["matchLabels"][COMPONENT] == "ui"
    (deployment,) = _of(_rendered("all-on"), "Deployment", "ui")
    assert deployment["spec"]["replicas"] == 2
    (account,) = _of(_rendered("all-on"), "ServiceAccount", "ui")
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["name"] == "jq-jobqueue-ui"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "jq-jobqueue-ui"
    env = {e["name"]: e.get("value") for e in _ui_container(_rendered("all-on"))["env"]}
    assert env["JOBQUEUE_UI_REDACT"] == "$.password,$..token"
    assert _ui_container(_rendered("all-on"))["image"] == (
        "registry.example/jobqueue-worker:0.1.0@sha256:" + "b" * 64
    )
    custom = _ui_container(_rendered("custom"))
    assert custom["image"] == "registry.example/jobqueue-worker:0.1.0-core"
    assert "JOBQUEUE_UI_REDACT" not in {e["name"] for e in custom["env"]}
    assert {"name": "JOBQUEUE_LOG_FORMAT", "value": "json"} in custom["env"]
    (deployment,) = _of(_rendered("custom"), "Deployment", "ui")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing-ui"
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_the_ui_service_selects_the_ui_pods_and_no_other() -> None:
    for name, kind, port in (("all-on", "ClusterIP", 80), ("custom", "NodePort", 8000)):
        objects = _rendered(name)
        (service,) = _of(objects, "Service", "ui")
        assert service["spec"]["type"] == kind
        assert service["spec"]["ports"] == [
            {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
        ]
        selector = service["spec"]["selector"].items()
        for deployment in _kind(objects, "Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"].items()
            selected = selector <= labels
            assert selected == (deployment["metadata"]["labels"][COMPONENT] == "ui"), name
        (operator,) = _of(objects, "Service", "operator")
        (ui,) = _of(objects, "Deployment", "ui")
        ui_labels = ui["spec"]["template"]["metadata"]["labels"].items()
        assert not operator["spec"]["selector"].items() <= ui_labels


def test_the_ui_ingress_is_optional_and_leads_to_its_service() -> None:
    assert _of(_rendered("custom"), "Ingress", "ui") == []
    objects = _rendered("all-on")
    (ingress,) = _of(objects, "Ingress", "ui")
    (service,) = _of(objects, "Service", "ui")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "jobqueue-ui-tls", "hosts": ["jobqueue.example.com"]}]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    (rule,) = spec["rules"]
    assert rule["host"] == "jobqueue.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"] == {"name": service["spec"]["ports"][0]["name"]}
    # Without hosts: one rule for every host; without tls: none.
    bare = _render(
        {"ui": {"enabled": True, "auth": {"existingSecret": "ui"}, "ingress": {"enabled": True}}}
    )
    (ingress,) = _of(bare, "Ingress", "ui")
    (rule,) = ingress["spec"]["rules"]
    assert "host" not in rule
    assert "tls" not in ingress["spec"]
    assert "ingressClassName" not in ingress["spec"]


@pytest.mark.xfail(not HAS_UI, reason=WAITING_FOR_UI, strict=True)
def test_the_ui_is_given_only_settings_it_declares() -> None:
    from jobqueue import plugins

    declared = {setting.env for setting in plugins.all_settings()}
    for name in ("all-on", "custom"):
        env = {entry["name"] for entry in _ui_container(_rendered(name))["env"]}
        chart_env = {e for e in env if e.startswith("JOBQUEUE_UI_")} | {"DATABASE_URL"}
        assert chart_env <= declared, f"{name}: {chart_env - declared}"


@pytest.mark.xfail(not HAS_UI, reason=WAITING_FOR_UI, strict=True)
def test_the_ui_command_takes_the_charts_arguments() -> None:
    container = _ui_container(_rendered("all-on"))
    command, *options = container["args"]
    done = run([venv_tool("jobqueue"), command, "--help"])
    assert done.returncode == 0, done.stderr
    for option in options[::2]:  # --host, --port
        assert option in done.stdout, f"`jobqueue ui` has no {option}"
