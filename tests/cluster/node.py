"""A real node for the test control plane: containerd, runc and the CNI plugins from Debian,
and a kubelet built from the same pinned Kubernetes modules (``build.node_binaries_dir``).

Pods run as containers under containerd with the node's kubelet, so what the process kubelet
(``cluster.kubelet``) only imitates is Kubernetes' own here: image pulls from the local store,
the restricted security context, probes, resource limits, OOM kills, SIGTERM and its grace.

Everything the node makes lives under its state folder (``/tmp/jobqueue-node-*``), plus what
the kernel keeps elsewhere: a bridge named ``jqbr<hex>`` with a /24 of 10.x.y.0 that this
machine does not route, the network namespaces containerd makes for its pods, the mounts of
the pods' volumes and of the container snapshots, and the kubelet's cgroups. ``stop()``
removes all of it; ``sweep()`` removes what a killed run left (every state folder with no
live owner), and runs before each start.

The node's name is the machine's hostname; its InternalIP is the bridge's host address, where
its kubelet serves the API the API server calls for ``kubectl logs`` and ``exec`` (client
certificates, and the API server's word on what each caller may do: a pod on the bridge gets
nothing). The kubelet itself authenticates with the admin's certificate: the API server
authorises by RBAC only, so a ``system:node`` identity would need the bindings the Node
authoriser normally stands in for. A test rig on one machine, not a pattern for a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import pathlib
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import typing

import psycopg.conninfo
import waiting

from cluster import api, build, children

STATE_PREFIX: typing.Final = "jobqueue-node-"
BRIDGE_PREFIX: typing.Final = "jqbr"
NAMESPACE: typing.Final = "k8s.io"  # containerd's namespace for the CRI's images and containers
OWNER_FILE: typing.Final = "owner.pid"
BRIDGE_FILE: typing.Final = "bridge"
STARTUP_TIMEOUT: typing.Final = 60.0
# Debian's packages the node needs (installed when missing, as root).
PACKAGES: typing.Final = ("containerd", "runc", "containernetworking-plugins", "iptables")
CNI_BIN: typing.Final = pathlib.Path("/usr/lib/cni")


class NodeError(Exception):
    pass


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def install_packages() -> None:
    """Debian's containerd, runc and CNI plugins, installed when missing (root and apt-get)."""
    if shutil.which("containerd") and shutil.which("runc") and (CNI_BIN / "bridge").exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise NodeError(f"the real node needs Debian's {' '.join(PACKAGES)} (root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)


@dataclasses.dataclass(frozen=True)
class PodNetwork:
    """The real node's pod network: a bridge, a /24 this machine does not route, and the
    host's address on the bridge (pods reach this machine, and only it, there)."""

    bridge: str
    subnet: ipaddress.IPv4Network

    @property
    def host_address(self) -> str:
        return str(next(self.subnet.hosts()))


def choose_pod_network() -> PodNetwork:
    """A bridge name and a free /24 for a node to make (nothing is made yet)."""
    return PodNetwork(f"{BRIDGE_PREFIX}{secrets.token_hex(4)}", _free_subnet())


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.0.0.0/8 that no route of this machine touches."""
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout
    taken = [
        ipaddress.ip_network(word, strict=False)
        for line in routes.splitlines()
        for word in line.split()[:1]
        if "/" in word
    ]
    rng = random.Random()
    for _ in range(100):
        subnet = ipaddress.IPv4Network(f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}.0/24")
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise NodeError("no free /24 in 10.0.0.0/8 for the pod bridge")


class RealNode:
    """containerd and a kubelet joined to the control plane at ``server`` (see the module
    docstring). ``images`` are OCI archives imported before the kubelet starts; ``name``
    defaults to the machine's hostname."""

    def __init__(
        self,
        server: str,
        ca_cert: pathlib.Path,
        client_cert: pathlib.Path,
        client_key: pathlib.Path,
        images: typing.Sequence[pathlib.Path] = (),
        name: str | None = None,
        network: PodNetwork | None = None,
    ) -> None:
        self.server = server
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.images = list(images)
        self.name = name or socket.gethostname()
        self.state = pathlib.Path(tempfile.mkdtemp(prefix=STATE_PREFIX))
        (self.state / OWNER_FILE).write_text(str(os.getpid()))
        self.logs = self.state / "logs"
        self.logs.mkdir()
        self.socket = self.state / "containerd.sock"
        self.network = network or choose_pod_network()
        self.bridge = self.network.bridge
        self.subnet = self.network.subnet
        self.host_address = self.network.host_address
        (self.state / BRIDGE_FILE).write_text(self.bridge)  # for a sweep after a killed run
        self.forwarders: list[Forwarder] = []
        self.pod_api_server = ""
        self.children = children.Children(self.logs, NodeError)
        self.startup_seconds = 0.0
        self.client = api.Client(api.Credentials(server, ca_cert, client_cert, client_key))

    # --- start --------------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        sweep()
        try:
            install_packages()
            binaries = build.node_binaries_dir()
            self._make_bridge()
            # The API server as the node's pods see it (its certificate names this address
            # when the control plane chose this network).
            api_port = int(self.server.rsplit(":", 1)[1])
            host, port = self.forward(("127.0.0.1", api_port), api_port)
            self.pod_api_server = f"https://{host}:{port}"
            self._start_containerd()
            self.import_images(binaries / build.PAUSE_ARCHIVE, *self.images)
            self._start_kubelet(binaries)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.children.log_tail(name, lines)

    def _make_bridge(self) -> None:
        """The pods' bridge, with the host's address on it, made before the kubelet starts:
        its node IP must exist, and the API server and PostgreSQL may listen on it."""
        prefix = self.subnet.prefixlen
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.host_address}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def _start_containerd(self) -> None:
        cni = self.state / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-jobqueue.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "jobqueue-pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": self.bridge,
                            "isGateway": True,  # the bridge holds the host's address
                            "isDefaultGateway": False,  # no route beyond the bridge
                            "ipMasq": False,  # no NAT: pods talk to this machine only
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": str(self.subnet)}]],
                                "dataDir": str(cni / "ipam"),
                            },
                        },
                        {"type": "loopback"},
                    ],
                }
            )
        )
        config = f"""
version = 2
root = "{self.state / "containerd" / "root"}"
state = "{self.state / "containerd" / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{build.PAUSE_IMAGE}"
  # Without CAP_SYS_RESOURCE runc cannot give a sandbox a negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni / "net.d"}"
"""
        path = self.state / "containerd.toml"
        path.write_text(config)
        self.children.start("containerd", ["containerd", "--config", str(path)])
        self.children.wait(
            "containerd's socket",
            lambda: self._ctr("version", check=False).returncode == 0,
            STARTUP_TIMEOUT,
        )

    def _ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.socket), "-n", NAMESPACE, *args, check=check)

    def import_images(self, *archives: pathlib.Path) -> None:
        """Put OCI archives into containerd's store, for pods with ``imagePullPolicy:
        Never`` (there is no registry)."""
        for archive in archives:
            self._ctr("images", "import", str(archive))

    def _start_kubelet(self, binaries: pathlib.Path) -> None:
        kubeconfig = self.state / "kubelet.kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                api.kubeconfig(
                    self.server,
                    self.ca_cert,
                    "kubelet",
                    {
                        "client-certificate-data": api.inline_file(self.client_cert),
                        "client-key-data": api.inline_file(self.client_key),
                    },
                )
            )
        )
        endpoint = f"unix://{self.socket}"
        self.kubelet_port = children.free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine has cgroup v1 (a warning, not an error)
            "cgroupDriver": "cgroupfs",  # no systemd here
            "containerRuntimeEndpoint": endpoint,
            "imageServiceEndpoint": endpoint,
            # On the bridge, the node's InternalIP, where the API server reaches it for logs
            # and exec; not on the machine's outside addresses.
            "address": self.host_address,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": children.free_port(),
            # Callers prove who they are (the API server by its client certificate) and the
            # API server says what they may do: pods on the bridge get nothing.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            # Images come from `ctr images import`, not a registry: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "failSwapOn": False,
            "resolvConf": "/etc/resolv.conf",
            "registerNode": True,
            "serializeImagePulls": False,
            # A test machine's disk may be fuller than the defaults allow: evict on memory only.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%"},
        }
        path = self.state / "kubelet.yaml"
        path.write_text(json.dumps(config))
        self.children.start(
            "kubelet",
            [
                str(binaries / "kubelet"),
                f"--config={path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.state / 'kubelet'}",
                f"--cert-dir={self.state / 'kubelet-pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.host_address}",
                "--v=1",
            ],
        )
        self.children.wait(f"node {self.name} Ready", self.ready, STARTUP_TIMEOUT)

    def ready(self) -> bool:
        node = self.client.get(f"/api/v1/nodes/{self.name}")
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def forward(self, target: str | tuple[str, int], port: int = 0) -> tuple[str, int]:
        """Relay connections to the host's address on the bridge (``port``, or a free one)
        to ``target`` on this machine (a TCP address, or a Unix socket's path): how pods
        reach the API server and PostgreSQL, which listen on loopback or a socket. Returns
        the address the pods use."""
        forwarder = Forwarder((self.host_address, port), target)
        self.forwarders.append(forwarder)
        return forwarder.address

    # --- stop ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the kubelet, every container and containerd, then remove what they made."""
        for forwarder in self.forwarders:
            forwarder.close()
        self.children.stop("kubelet")
        if "containerd" in self.children.processes:
            for task in self._ctr("tasks", "ls", "-q", check=False).stdout.split():
                self._ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        self.children.stop("containerd")
        with contextlib.suppress(api.ApiError, OSError):
            self.client.delete(f"/api/v1/nodes/{self.name}")
        _clean_up(self.state, self.bridge)

    def __enter__(self) -> RealNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Forwarder:
    """A TCP listener that relays each connection, both ways, to ``target``; a thread a
    direction. For test traffic (a worker's queries, an operator's API calls)."""

    def __init__(self, listen: tuple[str, int], target: str | tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        host, port = self.server.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self.connections: list[socket.socket] = []
        # One gate a connection, open while it is relayed (``freeze`` closes them).
        self.gates: list[threading.Event] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"forward-{port}").start()

    def _connect(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            return upstream
        return socket.create_connection(self.target)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            try:
                upstream = self._connect()
            except OSError:
                client.close()
                continue
            self.connections += [client, upstream]
            gate = threading.Event()
            gate.set()
            self.gates.append(gate)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink, gate), daemon=True).start()

    def freeze(self) -> None:
        """Stop relaying on the connections open now, without closing them: to each end the
        other goes silent, a half-open connection. New connections are relayed as before."""
        for gate in self.gates:
            gate.clear()

    def close(self) -> None:
        self.closed = True
        for gate in self.gates:
            gate.set()  # a frozen relay's threads end too
        # shutdown wakes the thread blocked in accept(); close alone would not, and it
        # would go on accepting.
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()


def database_address(database_url: str) -> str | tuple[str, int]:
    """Where the server of ``database_url`` listens, as a ``Forwarder`` target: its Unix
    socket's path, or its TCP address."""
    given = psycopg.conninfo.conninfo_to_dict(database_url)
    host, port = str(given.get("host") or "127.0.0.1"), int(given.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def _pump(source: socket.socket, sink: socket.socket, gate: threading.Event) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends, then end ``sink``'s writing; while
    ``gate`` is closed, what arrives is held back."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            gate.wait()
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one killed whose parent, often
    init after its own parent died, has not reaped it yet)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_under(state: pathlib.Path) -> list[int]:
    """The processes whose command line names the state folder (containerd's shims, and a
    containerd or kubelet a killed run left)."""
    found = []
    marker = str(state).encode()
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def _clean_up(state: pathlib.Path, bridge: str | None) -> None:
    """Remove what a node made: processes, the pods' network namespaces, mounts under its
    state folder, its cgroups, its bridge, and the folder."""
    doomed = processes_under(state) + container_processes(state)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    waiting.eventually_sync(
        lambda: not any(map(alive, doomed)), timeout=30, what="the node's processes gone"
    )
    for netns in netns_of(state):
        _run("ip", "netns", "delete", netns, check=False)
    mounts = [
        line.split()[4]
        for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(str(state))
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        _run("umount", "-l", mount, check=False)
    if not _live_nodes(besides=state):
        _remove_cgroups()  # shared by every node of this machine: only when none is left
    if bridge is not None:
        _run("ip", "link", "delete", bridge, check=False)
    shutil.rmtree(state, ignore_errors=True)


_NETNS: typing.Final = re.compile(rb"/var/run/netns/(cni-[0-9a-f-]{36})")


def netns_of(state: pathlib.Path) -> list[str]:
    """The network namespaces containerd made for the node's pods: named in its sandboxes'
    specs, which its metadata database keeps until a sandbox is removed (and a running
    task's bundle holds too)."""
    names: set[str] = set()
    containerd = state / "containerd"
    if containerd.exists():
        bundles = containerd.glob("state/io.containerd.runtime.v2.task/*/*/config.json")
        for path in [*containerd.glob("root/io.containerd.metadata.v1.bolt/meta.db"), *bundles]:
            with contextlib.suppress(OSError):
                names.update(match.decode() for match in _NETNS.findall(path.read_bytes()))
    return sorted(names)


def _container_ids(state: pathlib.Path) -> set[str]:
    """The ids of the node's containers (sandboxes included) that have or had a task."""
    containerd = state / "containerd"
    return {
        path.name
        for path in containerd.glob("*/io.containerd.runtime.v2.task/*/*")
        if len(path.name) == 64
    }


def processes_of_container(container_id: str) -> list[int]:
    """The processes of one container (``containerd://<id>`` without its scheme), found by
    its cgroup."""
    pods = pathlib.Path("/sys/fs/cgroup/pids/kubepods")
    for folder in pods.rglob(container_id):
        return [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
    return []


def container_processes(state: pathlib.Path) -> list[int]:
    """The processes of the node's containers, found by their cgroups (named after the
    container ids); their shims may be gone already."""
    ids = _container_ids(state)
    found: list[int] = []
    pods = pathlib.Path("/sys/fs/cgroup/pids/kubepods")
    if ids and pods.is_dir():
        for folder in pods.rglob("*/"):
            if folder.name in ids:
                with contextlib.suppress(OSError):
                    found += [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
    return found


def _remove_cgroups() -> None:
    """The kubelet's cgroups (``kubepods`` in every hierarchy), deepest first; a cgroup
    still holding a process (a pod of another live node) stays."""
    for hierarchy in pathlib.Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if top.is_dir():
            for folder in sorted(top.rglob("*/"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def _owner_alive(state: pathlib.Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return pathlib.Path(f"/proc/{int((state / OWNER_FILE).read_text())}").exists()
    return False


def _live_nodes(besides: pathlib.Path) -> list[pathlib.Path]:
    return [
        state
        for state in pathlib.Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*")
        if state != besides and _owner_alive(state)
    ]


def sweep() -> None:
    """Remove what killed runs left: every node state folder whose owner is gone, and its
    bridge."""
    for state in pathlib.Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*"):
        if _owner_alive(state):
            continue  # a live run's node
        bridge = None
        with contextlib.suppress(OSError):
            bridge = (state / BRIDGE_FILE).read_text().strip()
        _clean_up(state, bridge)
