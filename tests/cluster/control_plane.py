"""One control plane on loopback: etcd, kube-apiserver, kube-controller-manager and the process
kubelet, each a child process with its log in the state folder.

Every port is a free one picked at start, so two control planes (a ``make cluster`` and a test
run) can live side by side. The API server authenticates the admin by a client certificate
(``O=system:masters``), authorises with RBAC only, signs service-account tokens, and keeps
its default admission plugins, PodSecurity and ServiceAccount among them. The controller
manager runs only the controllers a process kubelet can live with: deployments, replica sets,
the garbage collector, service accounts, namespaces and the root CA's ConfigMap (which a
real node's pods mount). Node lifecycle and pod GC stay off,
since they would evict pods from a node whose kubelet is not the real one, and leader
election is off since there is one of each. ``stop()`` ends them in reverse order and removes
the state folder.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import typing
import urllib.request

from cluster import api, build, children, kubelet, node, pki

CONTROLLERS: typing.Final = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "namespace-controller",
    # kube-root-ca.crt in every namespace: a real kubelet mounts it into each pod's
    # ServiceAccount volume (the process kubelet writes its own files).
    "root-ca-certificate-publisher-controller",
)
NODE_NAME: typing.Final = "jobqueue-node"
SERVICE_CIDR: typing.Final = "10.0.0.0/24"
STARTUP_TIMEOUT: typing.Final = 120.0  # the API server alone can take a minute on two cores
TESTS_DIR: typing.Final = pathlib.Path(__file__).resolve().parents[1]


class ControlPlaneError(Exception):
    pass


free_port = children.free_port  # the tests pick their own ports with it too


class ControlPlane:
    def __init__(self, binaries: pathlib.Path, tools: pathlib.Path | None = None):
        self.binaries = binaries
        self.tools = tools
        self.state = pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-cluster-"))
        self.logs = self.state / "logs"
        self.logs.mkdir()
        self.children = children.Children(self.logs, ControlPlaneError)
        self.startup_seconds = 0.0
        # Chosen now, made only when a real node starts: the API server's certificate must
        # name the bridge's host address, through which the node's pods reach it.
        self.pod_network = node.choose_pod_network()
        self.pki = pki.create(self.state / "pki", (self.pod_network.host_address,))
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = self.state / "admin.kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                api.kubeconfig(
                    self.server,
                    self.pki.ca_cert,
                    "admin",
                    {
                        "client-certificate-data": api.inline_file(self.pki.admin_cert),
                        "client-key-data": api.inline_file(self.pki.admin_key),
                    },
                ),
                indent=2,
            )
        )
        self.client = api.Client(
            api.Credentials(self.server, self.pki.ca_cert, self.pki.admin_cert, self.pki.admin_key),
            timeout=10,
        )

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.children.start(name, argv, env)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.children.log_tail(name, lines)

    def _wait(self, what: str, check: typing.Callable[[], object]) -> None:
        self.children.wait(what, check, STARTUP_TIMEOUT)

    def start(self) -> None:
        try:
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
            self._start_kubelet()
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._start(
            "etcd",
            [
                str(self.binaries / "etcd"),
                "--name=default",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # throwaway data: durability costs time for nothing
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=5) as response:
                return bool(json.loads(response.read()).get("health") == "true")

        self._wait("etcd /health", healthy)

    def _start_apiserver(self) -> None:
        keys = self.pki
        self._start(
            "kube-apiserver",
            [
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={keys.server_cert}",
                f"--tls-private-key-file={keys.server_key}",
                f"--client-ca-file={keys.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={keys.service_account_key}",
                f"--service-account-signing-key-file={keys.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                # Logs and exec reach a kubelet at its node's InternalIP: the process kubelet's
                # loopback, the real node's bridge address (its hostname may not resolve).
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                # Its identity towards a kubelet that asks (the real node's checks it).
                f"--kubelet-client-certificate={keys.admin_cert}",
                f"--kubelet-client-key={keys.admin_key}",
                # As kubeadm sets it: privileged pods are PodSecurity's to refuse, per namespace.
                "--allow-privileged=true",
                # No real endpoints to publish for the `kubernetes` Service: pods reach the
                # API server through the kubeconfig the kubelet gives them.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.state / 'apiserver-certs'}",
                "--profiling=false",
            ],
        )
        self._wait("kube-apiserver /readyz", lambda: self.client.get_text("/readyz") == "ok")

    def _start_controller_manager(self) -> None:
        self._start(
            "kube-controller-manager",
            [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--root-ca-file={self.pki.ca_cert}",
            ],
        )
        # The serviceaccount controller making `default` is the sign that controllers run.
        self._wait(
            "the default ServiceAccount",
            lambda: self.client.get("/api/v1/namespaces/default/serviceaccounts/default"),
        )

    def _start_kubelet(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(TESTS_DIR / "support")]),
        }
        self._start(
            "kubelet",
            [
                sys.executable,
                "-m",
                "cluster.kubelet",
                f"--server={self.server}",
                f"--ca-cert={self.pki.ca_cert}",
                f"--client-cert={self.pki.admin_cert}",
                f"--client-key={self.pki.admin_key}",
                f"--node-name={NODE_NAME}",
                f"--state-dir={self.state / 'kubelet'}",
            ],
            env=env,
        )

        def node_ready() -> bool:
            node = self.client.get(f"/api/v1/nodes/{NODE_NAME}")
            conditions = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(f"node {NODE_NAME} Ready", node_ready)

    def stop(self) -> None:
        self.children.stop_all()
        kubelet.kill_recorded_pod_groups(self.state / "kubelet")
        shutil.rmtree(self.state, ignore_errors=True)

    def tool_env(self) -> dict[str, str]:
        """Environment for kubectl and helm against this control plane, helm's own state in
        the state folder rather than the user's home."""
        helm = self.state / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(helm / "cache"),
            "HELM_CONFIG_HOME": str(helm / "config"),
            "HELM_DATA_HOME": str(helm / "data"),
        }

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def started(with_tools: bool = True) -> ControlPlane:
    """Builds (or finds) the binaries and starts a control plane; the caller stops it."""
    binaries = build.binaries_dir()
    tools = build.tools_dir() if with_tools else None
    plane = ControlPlane(binaries, tools)
    began = time.monotonic()
    plane.start()
    plane.startup_seconds = time.monotonic() - began
    return plane
