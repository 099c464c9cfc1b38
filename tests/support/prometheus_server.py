"""A real Prometheus for the monitoring e2e test (issue 12): Debian's ``prometheus`` binary,
its data in a temporary folder, listening on a free loopback port, scraping the pods that
the Services of the test control plane point to, and its HTTP API.

The scrape jobs are what the Prometheus Operator makes of the chart's ServiceMonitors
(``charts/jobqueue/templates/servicemonitor.yaml``): the targets are the addresses of the
EndpointSlices of the Services the monitor selects, on the ``metrics`` port; the labels
``namespace``, ``service``, ``pod``, ``container``, ``job`` and ``endpoint`` come from the
target, then the monitor's own relabelings apply. So the series the dashboards and alerts
read carry the labels a user's Prometheus gives them, not ones made up for the test.

Debian builds Prometheus without ``kubernetes_sd_configs`` (its Go client libraries are
not packaged; ``promtool check config`` says "field kubernetes_sd_configs not found"), so
``Discovery`` stands in for it: an HTTP service discovery endpoint (``http_sd_configs``)
that reads Services and pods from the API server, with the token of a ServiceAccount of
Prometheus' own, and answers with the targets and ``__meta_kubernetes_*`` labels that
Prometheus' ``endpointslice`` role gives. The relabelings are then exactly the
ServiceMonitor's.
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import http.server
import json
import math
import pathlib
import subprocess
import threading
import typing
import urllib.error
import urllib.parse
import urllib.request

import deploy_files
import local_process
import waiting
import yaml

from cluster import api, control_plane

Json = dict[str, typing.Any]
# The scrape and rule evaluation interval: short, so a two-minute run has enough samples for
# rate() and its pictures; one second is the shortest Prometheus keeps a timeout within.
INTERVAL: typing.Final = "1s"


class PrometheusError(AssertionError):
    """The API refused a query (a parse error, a bad range...)."""


def binary() -> str:
    return deploy_files.prometheus_program("prometheus")


@dataclasses.dataclass(frozen=True)
class ServiceMonitor:
    """The fields of a ServiceMonitor endpoint that decide a scrape job's targets and labels."""

    namespace: str  # the monitor's own, as in its job name
    name: str
    service_labels: collections.abc.Mapping[str, str]  # spec.selector.matchLabels
    namespaces: collections.abc.Sequence[str]  # spec.namespaceSelector.matchNames
    port: str = "metrics"
    honor_labels: bool = False
    # spec.endpoints[].relabelings as (source meta label, target label) pairs.
    relabelings: collections.abc.Sequence[tuple[str, str]] = ()

    def scrape_config(self, discovery: Discovery) -> Json:
        meta = "__meta_kubernetes_"
        keep = [
            {
                "action": "keep",
                "source_labels": [
                    f"{meta}service_label_{_label_name(key)}",
                    f"{meta}service_labelpresent_{_label_name(key)}",
                ],
                "regex": f"({value});true",
            }
            for key, value in self.service_labels.items()
        ]
        keep.append(
            {
                "action": "keep",
                "source_labels": [f"{meta}endpointslice_port_name"],
                "regex": self.port,
            }
        )
        target = [
            {"source_labels": [f"{meta}namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}service_name"], "target_label": "service"},
            {"source_labels": [f"{meta}pod_name"], "target_label": "pod"},
            {"source_labels": [f"{meta}pod_container_name"], "target_label": "container"},
            {"source_labels": [f"{meta}service_name"], "target_label": "job"},
            {"target_label": "endpoint", "replacement": self.port},
        ]
        own = [
            {"source_labels": [source], "target_label": label} for source, label in self.relabelings
        ]
        return {
            "job_name": f"serviceMonitor/{self.namespace}/{self.name}/0",
            "honor_labels": self.honor_labels,
            "scrape_interval": INTERVAL,
            "scrape_timeout": INTERVAL,
            "metrics_path": "/metrics",
            "http_sd_configs": [
                {"url": discovery.url(self.namespaces), "refresh_interval": INTERVAL}
            ],
            "relabel_configs": keep + target + own,
        }


class Discovery:
    """Prometheus' Kubernetes ``endpointslice`` discovery, served over HTTP service discovery:
    ``GET /targets?namespace=a&namespace=b`` reads the Services and pods of those namespaces
    from the API server at every call (Prometheus polls it each ``INTERVAL``) and answers
    with a target group per address and port.

    The addresses are those the EndpointSlice controller would publish, the pods each
    Service selects, worked out here: the API server refuses EndpointSlices (and Endpoints)
    whose addresses are loopback ones, and the process kubelet's pods have 127.B.x.y."""

    def __init__(self, client: api.Client):
        self.client = client
        self.errors: list[str] = []
        discovery = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                try:
                    body = json.dumps(discovery.targets(query.get("namespace", []))).encode()
                except (OSError, api.ApiError) as error:
                    # Prometheus keeps the last targets it had; the test sees the error.
                    discovery.errors.append(f"{type(error).__name__}: {error}")
                    self.send_error(503, str(error))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: typing.Any) -> None:
                pass  # one request a second per scrape job: not worth a line each

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, namespaces: collections.abc.Sequence[str]) -> str:
        host, port = self.server.server_address[:2]
        query = urllib.parse.urlencode([("namespace", name) for name in namespaces])
        return f"http://{host!s}:{port}/targets?{query}"

    def targets(self, namespaces: collections.abc.Iterable[str]) -> list[Json]:
        groups: list[Json] = []
        for namespace in namespaces:
            base = f"/api/v1/namespaces/{namespace}"
            pods = self.client.get(f"{base}/pods")["items"]
            for service in self.client.get(f"{base}/services")["items"]:
                groups += _service_targets(service, pods)
        return groups

    def __enter__(self) -> Discovery:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _selects(service: Json, pod: Json) -> bool:
    selector = service["spec"].get("selector") or {}
    labels = pod["metadata"].get("labels", {})
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _container_port(pod: Json, target: int | str) -> tuple[str, Json] | None:
    """The container and its port that a Service's ``targetPort`` names (or numbers)."""
    for container in pod["spec"]["containers"]:
        for port in container.get("ports", []):
            if target in (port.get("name"), port["containerPort"]):
                return container["name"], port
    return None


def _service_targets(service: Json, pods: collections.abc.Iterable[Json]) -> list[Json]:
    """A Service's targets, labelled as Prometheus' endpointslice role labels them (the
    labels a ServiceMonitor's relabelings read)."""
    meta = "__meta_kubernetes_"
    name = service["metadata"]["name"]
    common = {
        f"{meta}namespace": service["metadata"]["namespace"],
        f"{meta}service_name": name,
        f"{meta}endpointslice_address_type": "IPv4",
    }
    for key, value in service["metadata"].get("labels", {}).items():
        common[f"{meta}service_label_{_label_name(key)}"] = value
        common[f"{meta}service_labelpresent_{_label_name(key)}"] = "true"
    groups = []
    for pod in pods:
        address = pod.get("status", {}).get("podIP")
        if not address or not _selects(service, pod):
            continue
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod["status"].get("conditions", [])
        )
        for service_port in service["spec"].get("ports", []):
            found = _container_port(pod, service_port.get("targetPort", service_port["port"]))
            if found is None:
                continue
            container, port = found
            labels = {
                **common,
                f"{meta}endpointslice_port_name": service_port.get("name", ""),
                f"{meta}endpointslice_port_protocol": service_port.get("protocol", "TCP"),
                f"{meta}endpointslice_port": str(port["containerPort"]),
                f"{meta}endpointslice_endpoint_conditions_ready": str(ready).lower(),
                f"{meta}endpointslice_address_target_kind": "Pod",
                f"{meta}endpointslice_address_target_name": pod["metadata"]["name"],
                **_pod_labels(pod, container, port),
            }
            groups.append({"targets": [f"{address}:{port['containerPort']}"], "labels": labels})
    return groups


def _pod_labels(pod: Json, container: str, port: Json) -> dict[str, str]:
    meta = "__meta_kubernetes_pod_"
    labels = {
        f"{meta}name": pod["metadata"]["name"],
        f"{meta}ip": pod["status"]["podIP"],
        f"{meta}node_name": pod["spec"].get("nodeName", ""),
        f"{meta}uid": pod["metadata"]["uid"],
        f"{meta}container_name": container,
        f"{meta}container_port_name": port.get("name", ""),
        f"{meta}container_port_number": str(port["containerPort"]),
    }
    for key, value in pod["metadata"].get("labels", {}).items():
        labels[f"{meta}label_{_label_name(key)}"] = value
        labels[f"{meta}labelpresent_{_label_name(key)}"] = "true"
    return labels


def _label_name(key: str) -> str:
    """A Kubernetes label key as Prometheus spells it in a meta label."""
    return "".join(char if char.isalnum() else "_" for char in key)


def finite_values(series: Json) -> list[float]:
    """The finite values of one series of a query_range result (NaN: no data then)."""
    found = [float(value) for _, value in series["values"]]
    return [value for value in found if math.isfinite(value)]


class Prometheus:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: pathlib.Path):
        self.process = process
        self.url = url
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Json:
        """An API call's ``data``; a refused query raises with Prometheus' error."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as got:
                body = json.loads(got.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
            raise PrometheusError(
                f"{path} {params}: HTTP {error.code}: {body.get('errorType')}: {body.get('error')}"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return typing.cast(Json, body["data"])

    def query(self, expression: str, at: float | None = None) -> list[Json]:
        params = {"query": expression}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data["resultType"]
        return typing.cast(list[Json], data["result"])

    def query_range(self, expression: str, start: float, end: float, step: float) -> list[Json]:
        data = self.api(
            "query_range",
            query=expression,
            start=f"{start:.3f}",
            end=f"{end:.3f}",
            step=f"{step:g}",
        )
        return typing.cast(list[Json], data["result"])

    def wait_for_series(self, expression: str, what: str, timeout: float = 90) -> list[Json]:
        """The instant query's series, once it has any; if none come, the failure says what
        Prometheus scrapes."""
        try:
            return typing.cast(
                list[Json],
                waiting.eventually_sync(
                    lambda: self._alive() and self.query(expression),
                    timeout=timeout,
                    interval=0.5,
                    what=f"{what} ({expression})",
                ),
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.targets_report()}") from None

    def targets_report(self) -> str:
        lines = ["Prometheus' targets:"]
        for target in self.api("targets")["activeTargets"]:
            labels = target["labels"]
            lines.append(
                f"  {target['scrapeUrl']} {target['health']} {target.get('lastError') or ''}"
                f" {json.dumps(labels, sort_keys=True)}"
            )
        dropped = self.api("targets", state="dropped")["droppedTargets"]
        lines.append(f"  and {len(dropped)} dropped by relabelling")
        lines += [f"    {json.dumps(t['discoveredLabels'], sort_keys=True)}" for t in dropped[:6]]
        return "\n".join(lines)

    def _alive(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited:\n{self.output()[-3000:]}"
        return True

    def stop(self) -> None:
        local_process.stop(self.process)


@contextlib.contextmanager
def running(
    folder: pathlib.Path,
    scrape_configs: collections.abc.Sequence[Json],
    rule_files: collections.abc.Sequence[pathlib.Path] = (),
) -> collections.abc.Iterator[Prometheus]:
    """Prometheus with these scrape jobs and rule files, ready; stopped at the end."""
    config = {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": list(scrape_configs),
    }
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = control_plane.free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                binary(),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Prometheus(process, url, log)
    try:
        waiting.eventually_sync(
            lambda: server._alive() and local_process.answers(f"{url}/-/ready"),
            timeout=60,
            interval=0.2,
            what="prometheus /-/ready",
        )
        yield server
    finally:
        server.stop()
