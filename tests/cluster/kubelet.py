"""A process kubelet: one Node of the test control plane whose pods are local processes.

Design
------
The real kubelet needs a container runtime, cgroups and a network plugin; the tests need the
API-visible behaviour of a node: pods bound, started, reported Ready, restarted, stopped
gracefully and deleted. This module provides that behaviour and nothing below it.

*Node.* At start it registers Node ``--node-name`` with a Ready condition, capacity and
``nodeInfo``, and refreshes the heartbeat every ``HEARTBEAT`` seconds. The controller
manager runs no node-lifecycle controller, so nothing evicts pods if this process dies.

*Identity.* The API server authorises with RBAC only (no Node authorizer), so this kubelet
uses the admin client certificate; the pods' processes get their own ServiceAccount
credentials (below), never the kubelet's.

*Scheduling.* There is no scheduler: every pending pod without ``spec.nodeName`` whose
``schedulerName`` is the default one is bound here with ``POST pods/{name}/binding``, as the
scheduler would (which also sets the ``PodScheduled`` condition): to the node its
``kubernetes.io/hostname`` nodeSelector names (the real node of ``cluster.node``, whose own
kubelet then runs it), else to this one.

*Sync loop.* The main thread lists pods every ``SYNC_PERIOD`` seconds (level-triggered, like
the real kubelet's periodic sync) and hands each pod bound to this node to a ``PodWorker``
thread keyed by UID. A worker owns its pod until the pod is gone from the API.

*Containers as processes.* ``spec.containers`` each become one process in a session of its
own (so ``kill -9`` of it, or of its group, is a crash of that container).
``spec.initContainers`` run first, one at a time, each to a zero exit (restarted on failure
unless ``restartPolicy`` is ``Never``, which fails the pod). Volumes other than the
service-account token, resources, sidecar (restartable init) containers, startup probes and
gRPC probes are not supported. The image chooses the program, by ``IMAGE_RULES`` (first ``fnmatch``
match wins):

- ``*jobqueue-worker*``: the ``jobqueue`` entry point installed in the kubelet's virtualenv
  (``.venv/bin/jobqueue``); a pod runs ``jobqueue worker ...`` with ``args: [worker, ...]``.
- ``*jobqueue-operator*``: ``python -m jobqueue_operator`` from the same virtualenv (the
  operator package's entry point, once it has one).
- ``*python*``: the virtualenv's ``python``.

``command`` replaces the image's entry point and ``args`` its arguments, as in Kubernetes;
a bare ``command[0]`` is looked up in the virtualenv's ``bin`` first, then ``PATH``. Another
image leaves the container waiting with reason ``ErrImagePull``.

*Environment.* A small base (``PATH`` with the virtualenv first, ``HOME`` the pod's folder,
``HOSTNAME`` the pod name, ``KUBERNETES_SERVICE_HOST``/``PORT`` the API server), then
``envFrom`` (Secrets and ConfigMaps, with ``prefix``), then ``env`` entries with ``value``
(``$(VAR)`` expanded), ``secretKeyRef``, ``configMapKeyRef`` (honouring ``optional``) and
``fieldRef`` (``metadata.name``/``namespace``/``uid``, labels and annotations by key,
``spec.nodeName``, ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``), all
read from the API when the container starts. A missing required reference leaves the
container waiting with ``CreateContainerConfigError`` and is retried.

*Networking: one loopback address per pod.* Processes share the host's network, so replicas
listening on the same ``containerPort`` would collide. Each pod gets its own ``podIP`` from
127.B.0.0/16 (Linux routes all of 127/8 to loopback), passed in ``KUBELET_POD_IP``, and
``podnet/`` is put first on ``PYTHONPATH``: its ``sitecustomize`` narrows a bind to
``0.0.0.0`` to the pod's address. So every replica binds the same port on its own address,
and probes and the pod's status use that address. This works for Python programs (all pods
here); a non-Python program would bind the wildcard and collide. B is the first block from 1
that no other kubelet on the machine holds (a kubelet holds its block by listening on
127.B.255.254 while it runs), so two control planes at once, say two checkouts' test runs,
never give two pods the same address.

*Service accounts.* If the pod has the projected service-account token volume that the
ServiceAccount admission plugin adds (i.e. the token is automounted), the worker asks the
TokenRequest API for a token bound to the pod, writes ``token``, ``ca.crt``, ``namespace``
and a ``kubeconfig`` using that token into the pod's folder, and sets ``KUBECONFIG``: the
process then acts with exactly its ServiceAccount's RBAC. The token is renewed at 80% of
its life, as the real kubelet does.

*Status.* Phase, ``startTime``, ``podIP(s)``, ``hostIP(s)``, ``containerStatuses`` (state,
``lastState``, ``ready``, ``started``, ``restartCount``) and the ``Initialized``,
``ContainersReady`` and ``Ready`` conditions, whose ``lastTransitionTime`` changes only when
their status does, are written with a merge patch on ``pods/{name}/status`` when they change.

*Probes.* ``readinessProbe`` drives ``ready`` (no probe: ready once running);
``livenessProbe`` failing ``failureThreshold`` times in a row stops the container, which is
then restarted by ``restartPolicy``; both support ``httpGet``, ``tcpSocket`` and ``exec``,
``initialDelaySeconds``, ``periodSeconds``, ``timeoutSeconds``, ``successThreshold`` and
``failureThreshold`` with Kubernetes' defaults.

*Restarts.* An exited container is restarted per ``restartPolicy`` (``Always``,
``OnFailure``, ``Never``) with the kubelet's crash-loop back-off: the first restart at once,
then 10 s doubling to 300 s, reset after 10 minutes of running; while it waits the
container shows ``CrashLoopBackOff``. When no container will run again the phase becomes
``Succeeded`` or ``Failed``.

*Deletion.* When a pod gets a ``deletionTimestamp`` the worker sends SIGTERM to each
container's main process, waits up to the pod's deletion grace period (from the API, which
takes it from ``terminationGracePeriodSeconds`` or the delete call), then SIGKILLs the
container's whole process group, reports the containers terminated, and deletes the pod with
``gracePeriodSeconds: 0`` and a UID precondition, as the real kubelet does. A pod removed
from the API without that (a forced delete) has its processes killed at once.

*Shutdown.* SIGTERM or SIGINT to the kubelet kills every pod's processes and exits; the pods
stay in the API, as they would on a node that went away.

Logs of each container go to ``<state-dir>/pods/<namespace>_<name>_<uid>/<container>.log``
(``kubectl logs`` needs a kubelet API server this kubelet does not have).
"""

from __future__ import annotations

import argparse
import base64
import collections.abc
import contextlib
import dataclasses
import datetime
import fnmatch
import http.client
import itertools
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import typing

from cluster import api

Json = api.Json

SYNC_PERIOD: typing.Final = 0.2
POD_TICK: typing.Final = 0.1
HEARTBEAT: typing.Final = 10.0
BACKOFF_START: typing.Final = 10.0
BACKOFF_MAX: typing.Final = 300.0
BACKOFF_RESET_AFTER: typing.Final = 600.0
DEFAULT_GRACE: typing.Final = 30
HOST_IP: typing.Final = "127.0.0.1"
HOSTNAME_LABEL: typing.Final = "kubernetes.io/hostname"
VENV_BIN: typing.Final = pathlib.Path(sys.executable).parent
PODNET: typing.Final = pathlib.Path(__file__).resolve().parent / "podnet"
# What the ServiceAccount admission plugin puts in the projected token volume it adds.
SERVICE_ACCOUNT_TOKEN_SECONDS: typing.Final = 3607


@dataclasses.dataclass(frozen=True)
class ImageRule:
    pattern: str
    entrypoint: tuple[str, ...]


IMAGE_RULES: typing.Final = (
    ImageRule("*jobqueue-worker*", (str(VENV_BIN / "jobqueue"),)),
    ImageRule("*jobqueue-operator*", (str(VENV_BIN / "python"), "-m", "jobqueue_operator")),
    ImageRule("*python*", (str(VENV_BIN / "python"),)),
)


class ContainerConfigError(Exception):
    """The container cannot start yet: a missing Secret, key or image rule."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(message: str) -> None:
    print(f"{now_iso()} kubelet: {message}", flush=True)


def pod_path(pod: Json, suffix: str = "") -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}{suffix}"


def pod_key(pod: Json) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


# --- what a container runs, and with which environment -----------------------------------


def command_for(container: Json) -> list[str]:
    image = container.get("image", "")
    rule = next((r for r in IMAGE_RULES if fnmatch.fnmatch(image, r.pattern)), None)
    if rule is None:
        raise ContainerConfigError(
            "ErrImagePull", f"image {image!r} has no local command (see cluster.kubelet)"
        )
    command = list(container.get("command") or rule.entrypoint)
    if container.get("command"):
        command[0] = _find_program(command[0])
    return [*command, *container.get("args", [])]


def _find_program(name: str) -> str:
    if os.sep in name:
        return name
    in_venv = VENV_BIN / name
    if in_venv.exists():
        return str(in_venv)
    found = shutil.which(name)
    if found is None:
        raise ContainerConfigError("RunContainerError", f"executable {name!r} not found")
    return found


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: collections.abc.Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``,
    unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def _field(pod: Json, path: str) -> str:
    meta = pod["metadata"]
    labelled = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if labelled:
        return str(meta.get(labelled.group(1), {}).get(labelled.group(2), ""))
    simple: dict[str, typing.Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": pod.get("status", {}).get("podIP"),
        "status.hostIP": HOST_IP,
    }
    if path not in simple:
        raise ContainerConfigError("CreateContainerConfigError", f"unsupported fieldRef {path}")
    return str(simple[path] or "")


class EnvResolver:
    """Reads the Secrets and ConfigMaps a container refers to, once per start."""

    def __init__(self, client: api.Client, namespace: str):
        self.client = client
        self.namespace = namespace
        self._cache: dict[tuple[str, str], dict[str, str] | None] = {}

    def data(self, kind: str, name: str) -> dict[str, str] | None:
        if (kind, name) not in self._cache:
            resource = "secrets" if kind == "Secret" else "configmaps"
            try:
                found = self.client.get(f"/api/v1/namespaces/{self.namespace}/{resource}/{name}")
            except api.ApiError as error:
                if error.status != 404:
                    raise
                self._cache[kind, name] = None
            else:
                raw = found.get("data") or {}
                self._cache[kind, name] = (
                    {key: base64.b64decode(value).decode() for key, value in raw.items()}
                    if kind == "Secret"
                    else dict(raw)
                )
        return self._cache[kind, name]

    def key(self, kind: str, reference: Json) -> str | None:
        data = self.data(kind, reference["name"])
        optional = bool(reference.get("optional"))
        if data is None:
            if optional:
                return None
            raise ContainerConfigError(
                "CreateContainerConfigError", f'{kind.lower()} "{reference["name"]}" not found'
            )
        if reference["key"] not in data:
            if optional:
                return None
            raise ContainerConfigError(
                "CreateContainerConfigError",
                f"couldn't find key {reference['key']} in {kind} "
                f"{self.namespace}/{reference['name']}",
            )
        return data[reference["key"]]

    def environment(self, pod: Json, container: Json, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        for source in container.get("envFrom", []):
            kind, reference = (
                ("Secret", source["secretRef"])
                if "secretRef" in source
                else ("ConfigMap", source["configMapRef"])
            )
            data = self.data(kind, reference["name"])
            if data is None:
                if reference.get("optional"):
                    continue
                raise ContainerConfigError(
                    "CreateContainerConfigError",
                    f'{kind.lower()} "{reference["name"]}" not found',
                )
            prefix = source.get("prefix", "")
            env.update({prefix + key: value for key, value in data.items()})
        for variable in container.get("env", []):
            name, source = variable["name"], variable.get("valueFrom")
            value: str | None
            if source is None:
                value = expand(variable.get("value", ""), env)
            elif "secretKeyRef" in source:
                value = self.key("Secret", source["secretKeyRef"])
            elif "configMapKeyRef" in source:
                value = self.key("ConfigMap", source["configMapKeyRef"])
            elif "fieldRef" in source:
                value = _field(pod, source["fieldRef"]["fieldPath"])
            else:
                raise ContainerConfigError(
                    "CreateContainerConfigError", f"env {name}: unsupported valueFrom {source}"
                )
            if value is not None:
                env[name] = value
        return env


# --- probes -----------------------------------------------------------------------------


def _probe_port(port: int | str, container: Json) -> int:
    if isinstance(port, int) or port.isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"no container port named {port!r}")


def run_probe(probe: Json, container: Json, pod_ip: str, env: dict[str, str]) -> bool:
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            host = get.get("host") or pod_ip
            port = _probe_port(get["port"], container)
            connection_class = (
                http.client.HTTPSConnection
                if get.get("scheme", "HTTP") == "HTTPS"
                else http.client.HTTPConnection
            )
            connection = connection_class(host, port, timeout=timeout)
            try:
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
                headers.setdefault("User-Agent", "kube-probe/process-kubelet")
                connection.request("GET", get.get("path", "/"), headers=headers)
                return 200 <= connection.getresponse().status < 400
            finally:
                connection.close()
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            address = (tcp.get("host") or pod_ip, _probe_port(tcp["port"], container))
            with socket.create_connection(address, timeout=timeout):
                return True
        if "exec" in probe:
            command = probe["exec"]["command"]
            done = subprocess.run(
                [_find_program(command[0]), *command[1:]],
                env=env,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            return done.returncode == 0
    except (OSError, ValueError, subprocess.TimeoutExpired, ContainerConfigError):
        return False
    return False  # a probe kind this kubelet does not run (gRPC) never succeeds


@dataclasses.dataclass
class ProbeState:
    spec: Json
    due: float
    successes: int = 0
    failures: int = 0

    @classmethod
    def start(cls, spec: Json | None, started: float) -> ProbeState | None:
        if not spec:
            return None
        return cls(spec, started + float(spec.get("initialDelaySeconds", 0)))

    def step(self, passed: bool, now: float) -> None:
        self.due = now + float(self.spec.get("periodSeconds", 10))
        if passed:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1

    def succeeded(self) -> bool:
        return self.successes >= int(self.spec.get("successThreshold", 1))

    def failed(self) -> bool:
        return self.failures >= int(self.spec.get("failureThreshold", 3))


# --- one container ----------------------------------------------------------------------


@dataclasses.dataclass
class Container:
    spec: Json
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    started_at: str | None = None
    started_monotonic: float = 0.0
    restart_count: int = 0
    ready: bool = False
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    last_state: Json = dataclasses.field(default_factory=dict)
    terminated: Json | None = None
    restart_at: float = 0.0
    readiness: ProbeState | None = None
    liveness: ProbeState | None = None
    kill_at: float | None = None  # set while stopping: when SIGTERM turns into SIGKILL
    backoff: float = 0.0
    exit_recorded: bool = False
    init: bool = False  # an init container: runs to completion before the others start
    group_record: pathlib.Path | None = None  # the file that records its process group

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def completed(self) -> bool:
        return self.terminated is not None and self.terminated["exitCode"] == 0

    def stop(self, grace: float) -> None:
        """SIGTERM to the main process now; SIGKILL to its group once ``grace`` is over."""
        if self.running() and self.kill_at is None:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            self.kill_at = time.monotonic() + grace

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            if self.process.returncode is not None and self.group_record is not None:
                self.group_record.unlink(missing_ok=True)  # its pid may now go to another

    def status(self) -> Json:
        state: Json
        if self.running():
            state = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated}
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        container_id = f"process://{self.process.pid}" if self.process else None
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"process://{self.spec.get('image', '')}",
            **({"containerID": container_id} if container_id else {}),
            "ready": (self.ready and self.running()) or (self.init and self.completed()),
            "started": self.running(),
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last_state,
        }


# --- one pod ----------------------------------------------------------------------------


class PodWorker(threading.Thread):
    """Runs one pod from binding to deletion: its containers, probes, status and end."""

    def __init__(self, kubelet: Kubelet, pod: Json, pod_ip: str):
        super().__init__(name=f"pod-{pod_key(pod)}", daemon=True)
        self.kubelet = kubelet
        self.client = kubelet.client
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.pod_ip = pod_ip
        self.folder = kubelet.state_dir / "pods" / f"{pod_key(pod).replace('/', '_')}_{self.uid}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.init_containers = [
            Container(spec, init=True) for spec in pod["spec"].get("initContainers", [])
        ]
        waiting = ("PodInitializing", "") if self.init_containers else ("ContainerCreating", "")
        self.containers = [Container(spec, waiting=waiting) for spec in pod["spec"]["containers"]]
        self.all_containers = [*self.init_containers, *self.containers]
        self.start_time = now_iso()
        self.conditions: dict[str, tuple[str, str]] = {}
        self.reported: Json | None = None
        self.token_renew_at = 0.0
        self.gone = threading.Event()
        self.changed = threading.Event()
        self.finished = False
        self.terminating = False  # deleted: nothing restarts, the phase becomes terminal

    def update(self, pod: Json) -> None:
        self.pod = pod
        self.changed.set()

    def vanish(self) -> None:
        """The pod is no longer in the API (a forced delete): stop everything at once."""
        self.gone.set()
        self.changed.set()

    def shutdown(self) -> None:
        for container in self.all_containers:
            container.kill()

    # The thread's loop: one tick at a time, woken early by a pod update.
    def run(self) -> None:
        try:
            while not self.kubelet.stopping.is_set():
                if self.gone.is_set():
                    self.shutdown()
                    return
                if self.pod["metadata"].get("deletionTimestamp"):
                    self.terminate()
                    return
                self.tick()
                self.changed.wait(POD_TICK)
                self.changed.clear()
        except Exception as error:  # one pod's failure must not take the node down
            log(f"{pod_key(self.pod)}: worker failed: {error!r}")
            self.shutdown()
        finally:
            self.finished = True

    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    def grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        given = meta.get("deletionGracePeriodSeconds")
        if given is None:
            given = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        return float(given)

    def tick(self) -> None:
        now = time.monotonic()
        try:
            self.renew_token(now)
        except (OSError, api.ApiError) as error:
            log(f"{pod_key(self.pod)}: token request failed, retrying: {error}")
        # Init containers one at a time, in order; the others once all have completed.
        pending_init = next((c for c in self.init_containers if not c.completed()), None)
        for container in [pending_init] if pending_init else self.containers:
            self.tick_container(container, now)
        try:
            self.report()
        except (OSError, api.ApiError) as error:  # the next tick tries again
            log(f"{pod_key(self.pod)}: status update failed: {error}")

    def tick_container(self, container: Container, now: float) -> None:
        if container.process is not None and container.process.poll() is not None:
            self.exited(container, now)
        if container.process is None or container.terminated is not None:
            if self.should_start(container) and now >= container.restart_at:
                self.start_container(container)
            return
        if container.kill_at is not None:
            if now >= container.kill_at:
                container.kill()
            return
        if container.readiness is not None and now >= container.readiness.due:
            container.readiness.step(self.probe(container, container.readiness), now)
            if container.readiness.succeeded():
                container.ready = True
            elif container.readiness.failed():
                container.ready = False
        elif container.readiness is None:
            container.ready = not container.init
        if container.liveness is not None and now >= container.liveness.due:
            container.liveness.step(self.probe(container, container.liveness), now)
            if container.liveness.failed():
                log(f"{pod_key(self.pod)}/{container.name}: liveness failed, restarting")
                container.ready = False
                container.stop(self.grace())

    def probe(self, container: Container, state: ProbeState) -> bool:
        return run_probe(state.spec, container.spec, self.pod_ip, container.env)

    def should_start(self, container: Container) -> bool:
        if container.process is None and container.terminated is None:
            return True  # never started yet
        policy = self.restart_policy()
        exit_code = (container.terminated or {}).get("exitCode", 0)
        if container.init:  # a completed init container never runs again
            return exit_code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def exited(self, container: Container, now: float) -> None:
        assert container.process is not None
        if container.exit_recorded:
            return
        container.exit_recorded = True
        container.kill()  # what it left behind in its process group goes with it
        code = container.process.returncode
        terminated: Json = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": container.started_at,
            "finishedAt": now_iso(),
            "containerID": f"process://{container.process.pid}",
        }
        if code < 0:  # killed by a signal: Kubernetes reports 128 + the signal's number
            terminated["exitCode"] = 128 - code
            terminated["signal"] = -code
        container.terminated = terminated
        container.ready = False
        container.kill_at = None
        if now - container.started_monotonic > BACKOFF_RESET_AFTER:
            container.backoff = 0.0
        container.restart_at = now + container.backoff
        container.backoff = min(max(container.backoff * 2, BACKOFF_START), BACKOFF_MAX)
        log(f"{pod_key(self.pod)}/{container.name}: exited with {terminated['exitCode']}")

    def base_environment(self) -> dict[str, str]:
        return {
            "PATH": os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(self.folder),
            "HOSTNAME": self.pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.kubelet.api_port),
        }

    def start_container(self, container: Container) -> None:
        pod = self.pod
        if self.wants_token() and not self.token_renew_at:
            container.waiting = ("ContainerCreating", "waiting for the service-account token")
            return
        try:
            argv_template = command_for(container.spec)
            resolver = EnvResolver(self.client, pod["metadata"]["namespace"])
            pod_for_fields = {**pod, "status": {**pod.get("status", {}), "podIP": self.pod_ip}}
            env = resolver.environment(pod_for_fields, container.spec, self.base_environment())
        except ContainerConfigError as error:
            container.waiting = (error.reason, str(error))
            container.restart_at = time.monotonic() + 1.0
            return
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PODNET), env.get("PYTHONPATH")]))
        env["KUBELET_POD_IP"] = self.pod_ip
        if self.token_renew_at:
            env["KUBECONFIG"] = str(self.folder / "serviceaccount" / "kubeconfig")
        argv = [expand(part, env) for part in argv_template]
        working_dir = container.spec.get("workingDir") or str(self.folder)
        if container.terminated is not None:
            container.last_state = {"terminated": container.terminated}
            container.restart_count += 1
        with open(self.folder / f"{container.name}.log", "ab") as output:
            try:
                container.process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=working_dir,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as error:
                container.waiting = ("RunContainerError", str(error))
                container.restart_at = time.monotonic() + 1.0
                return
        # The session leader's pid is its group: recorded for ControlPlane.stop's backstop.
        groups = self.kubelet.state_dir / POD_GROUPS
        groups.mkdir(exist_ok=True)
        container.group_record = groups / str(container.process.pid)
        container.group_record.touch()
        now = time.monotonic()
        container.env = env
        container.started_at = now_iso()
        container.started_monotonic = now
        container.terminated = None
        container.exit_recorded = False
        container.waiting = None
        container.ready = False
        container.kill_at = None
        container.readiness = ProbeState.start(container.spec.get("readinessProbe"), now)
        container.liveness = ProbeState.start(container.spec.get("livenessProbe"), now)
        log(f"{pod_key(pod)}/{container.name}: started pid {container.process.pid}: {argv}")

    # Service-account token: TokenRequest bound to this pod, as a kubeconfig for the process.
    def wants_token(self) -> bool:
        if self.pod["spec"].get("automountServiceAccountToken") is False:
            return False
        return any(
            "serviceAccountToken" in source
            for volume in self.pod["spec"].get("volumes", [])
            for source in volume.get("projected", {}).get("sources", [])
        )

    def renew_token(self, now: float) -> None:
        if now < self.token_renew_at or not self.wants_token():
            return
        spec = self.pod["spec"]
        account = spec.get("serviceAccountName") or "default"
        namespace = self.pod["metadata"]["namespace"]
        answer = self.client.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": SERVICE_ACCOUNT_TOKEN_SECONDS,
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": self.pod["metadata"]["name"],
                        "uid": self.uid,
                    },
                },
            },
        )
        token = answer["status"]["token"]
        folder = self.folder / "serviceaccount"
        folder.mkdir(exist_ok=True)
        (folder / "token").write_text(token)
        (folder / "namespace").write_text(namespace)
        shutil.copyfile(self.client.credentials.ca_cert, folder / "ca.crt")
        config = api.kubeconfig(
            self.client.credentials.server,
            self.client.credentials.ca_cert,
            f"system:serviceaccount:{namespace}:{account}",
            {"token": token},
        )
        config["contexts"][0]["context"]["namespace"] = namespace
        partial = folder / "kubeconfig.partial"
        partial.write_text(json.dumps(config, indent=2))
        partial.replace(folder / "kubeconfig")  # a reader never sees half a file
        self.token_renew_at = now + 0.8 * SERVICE_ACCOUNT_TOKEN_SECONDS

    # Status.
    def condition(self, kind: str, status: bool) -> Json:
        text = "True" if status else "False"
        previous = self.conditions.get(kind)
        if previous is None or previous[0] != text:
            self.conditions[kind] = (text, now_iso())
        return {
            "type": kind,
            "status": text,
            "lastProbeTime": None,
            "lastTransitionTime": self.conditions[kind][1],
        }

    def initialized(self) -> bool:
        return all(c.completed() for c in self.init_containers)

    def phase(self) -> str:
        def any_failed(containers: list[Container]) -> bool:
            return any((c.terminated or {}).get("exitCode", 0) != 0 for c in containers)

        if self.terminating and not any(c.running() for c in self.all_containers):
            return "Failed" if any_failed(self.containers) else "Succeeded"
        if not self.initialized():
            # An init container that failed and may not run again fails the pod.
            stuck = any(c.terminated and not self.should_start(c) for c in self.init_containers)
            return "Failed" if stuck else "Pending"
        if any(c.running() for c in self.containers):
            return "Running"
        if any(c.process is None and c.terminated is None for c in self.containers):
            return "Pending"
        if any(self.should_start(c) for c in self.containers):
            return "Running"  # between a crash and its restart
        return "Failed" if any_failed(self.containers) else "Succeeded"

    def status(self) -> Json:
        ready = all(c.ready and c.running() for c in self.containers)
        owned = {"Initialized", "ContainersReady", "Ready"}
        others = [
            c for c in self.pod.get("status", {}).get("conditions", []) if c["type"] not in owned
        ]
        return {
            "phase": self.phase(),
            "startTime": self.start_time,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "conditions": [
                *others,
                self.condition("Initialized", self.initialized()),
                self.condition("ContainersReady", ready),
                self.condition("Ready", ready),
            ],
            "containerStatuses": [c.status() for c in self.containers],
            **(
                {"initContainerStatuses": [c.status() for c in self.init_containers]}
                if self.init_containers
                else {}
            ),
        }

    def report(self) -> None:
        status = self.status()
        if status == self.reported:
            return
        try:
            self.client.merge_patch(pod_path(self.pod, "/status"), {"status": status})
        except api.ApiError as error:
            if error.status == 404:
                self.vanish()
                return
            raise
        self.reported = status

    # Deletion: SIGTERM, grace, SIGKILL, then delete with grace 0 and a UID precondition.
    def terminate(self) -> None:
        grace = self.grace()
        log(f"{pod_key(self.pod)}: deleting, grace {grace:g}s")
        self.terminating = True
        for container in self.all_containers:
            container.stop(grace)
        deadline = time.monotonic() + grace
        while any(c.running() for c in self.all_containers) and time.monotonic() < deadline:
            if self.gone.wait(POD_TICK):
                break
        for container in self.all_containers:
            container.kill()
            if container.process is not None:
                self.exited(container, time.monotonic())
        with contextlib.suppress(api.ApiError):
            self.client.merge_patch(pod_path(self.pod, "/status"), {"status": self.status()})
        try:
            self.client.delete(
                pod_path(self.pod),
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )
        except api.ApiError as error:
            if error.status not in (404, 409):  # gone already, or a new pod of the same name
                raise
        log(f"{pod_key(self.pod)}: deleted")


# --- the node ---------------------------------------------------------------------------


BLOCK_HOLD_PORT: typing.Final = 10250  # the real kubelet's port, on an address no pod gets


POD_GROUPS: typing.Final = "pod-groups"  # in the state folder: a file per pod process group


def _blocks_listened_on() -> set[int]:
    """The B of every 127.B.x.y a TCP socket listens on: a pod process that outlived its
    kubelet (a test run killed hard) may still serve there, and a new pod given its address
    could not bind."""
    blocks = set()
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            address = bytes.fromhex(local.split(":")[0])[::-1]  # stored little-endian
            if address[0] == 127:
                blocks.add(address[1])
    return blocks


def kill_recorded_pod_groups(state_dir: pathlib.Path) -> None:
    """SIGKILL every pod process group this kubelet state folder recorded: the backstop for
    a kubelet that died before it could stop its pods."""
    for record in (state_dir / POD_GROUPS).glob("*"):
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(record.name), signal.SIGKILL)


def _hold_address_block() -> tuple[int, socket.socket]:
    """The first 127.B.0.0/16 no other kubelet holds and nothing listens in, and the
    listening socket that holds it for as long as this process lives."""
    in_use = _blocks_listened_on()
    for block in range(1, 255):
        if block in in_use:
            continue
        hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            hold.bind((f"127.{block}.255.254", BLOCK_HOLD_PORT))
            hold.listen()
        except OSError:
            hold.close()
            continue
        return block, hold
    raise RuntimeError("every 127.B.0.0/16 block is held by another kubelet")


class Kubelet:
    def __init__(self, client: api.Client, node_name: str, state_dir: pathlib.Path):
        self.client = client
        self.node_name = node_name
        self.state_dir = state_dir
        self.api_port = int(client.credentials.server.rsplit(":", 1)[1])
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()
        self._block, self._block_hold = _hold_address_block()
        self._addresses = (f"127.{self._block}.{n // 250}.{n % 250 + 2}" for n in itertools.count())
        self._heartbeat_due = 0.0
        self.version = str(client.get("/version").get("gitVersion", "unknown"))

    def register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        try:
            self.client.create("/api/v1/nodes", node)
        except api.ApiError as error:
            if error.status != 409:
                raise
        self.heartbeat()

    def heartbeat(self) -> None:
        now = now_iso()
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "8Gi", "pods": "110"}
        previous = {}
        with contextlib.suppress(api.ApiError):
            node = self.client.get(f"/api/v1/nodes/{self.node_name}")
            previous = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
        transition = previous.get("Ready", {}).get("lastTransitionTime", now)
        if previous.get("Ready", {}).get("status") != "True":
            transition = now
        self.client.merge_patch(
            f"/api/v1/nodes/{self.node_name}/status",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "process kubelet is posting ready status",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": transition,
                        }
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": HOST_IP},
                        {"type": "Hostname", "address": self.node_name},
                    ],
                    "capacity": capacity,
                    "allocatable": capacity,
                    "nodeInfo": {
                        "kubeletVersion": self.version,
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "containerRuntimeVersion": "process://1",
                        "kernelVersion": platform.release(),
                        "osImage": "local processes",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                }
            },
        )
        self._heartbeat_due = time.monotonic() + HEARTBEAT

    def bind(self, pod: Json) -> None:
        meta = pod["metadata"]
        selector = pod["spec"].get("nodeSelector") or {}
        node_name = selector.get(HOSTNAME_LABEL, self.node_name)
        try:
            self.client.create(
                pod_path(pod, "/binding"),
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": meta["name"], "uid": meta["uid"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
                },
            )
        except api.ApiError as error:
            if error.status not in (404, 409):  # deleted meanwhile, or bound already
                raise
        else:
            log(f"{pod_key(pod)}: bound to {node_name}")

    def sync(self) -> None:
        pods = self.client.get("/api/v1/pods").get("items", [])
        seen = set()
        for pod in pods:
            spec, meta = pod["spec"], pod["metadata"]
            if not spec.get("nodeName"):
                scheduler = spec.get("schedulerName", "default-scheduler")
                if scheduler == "default-scheduler" and not meta.get("deletionTimestamp"):
                    self.bind(pod)
                continue
            if spec["nodeName"] != self.node_name:
                continue
            uid = meta["uid"]
            seen.add(uid)
            worker = self.workers.get(uid)
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not (
                    meta.get("deletionTimestamp")
                ):
                    continue  # finished before this kubelet started: nothing to run
                worker = PodWorker(self, pod, next(self._addresses))
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                worker.vanish()
            if worker.finished:
                del self.workers[uid]

    def run(self) -> None:
        self.register_node()
        log(f"node {self.node_name} registered ({self.version}), pods on 127.{self._block}.0.0/16")
        while not self.stopping.is_set():
            try:
                self.sync()
                if time.monotonic() >= self._heartbeat_due:
                    self.heartbeat()
            except (OSError, api.ApiError) as error:
                log(f"sync failed, retrying: {error}")
            self.stopping.wait(SYNC_PERIOD)
        for worker in self.workers.values():
            worker.shutdown()
        log("stopped; pod processes killed")


def main(argv: collections.abc.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.kubelet", description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca-cert", type=pathlib.Path, required=True)
    parser.add_argument("--client-cert", type=pathlib.Path, required=True)
    parser.add_argument("--client-key", type=pathlib.Path, required=True)
    parser.add_argument("--node-name", default="jobqueue-node")
    parser.add_argument("--state-dir", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    client = api.Client(
        api.Credentials(args.server, args.ca_cert, args.client_cert, args.client_key)
    )
    kubelet = Kubelet(client, args.node_name, args.state_dir)

    def stop(signum: int, frame: object) -> None:
        kubelet.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
