"""The real kubectl and helm against a test control plane, one namespace per test."""

from __future__ import annotations

import json
import pathlib
import subprocess
import typing

import waiting
import yaml

from cluster import api, control_plane

Json = api.Json


class KubectlError(AssertionError):
    pass


class Kube:
    def __init__(self, plane: control_plane.ControlPlane, namespace: str):
        assert plane.tools is not None, "the control plane was started without kubectl"
        self.plane = plane
        self.namespace = namespace
        self.kubectl_path = str(plane.tools / "kubectl")
        self.helm_path = str(plane.tools / "helm")

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, f"--namespace={self.namespace}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.plane.tool_env(),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.helm_path, f"--namespace={self.namespace}", *args],
            capture_output=True,
            text=True,
            env=self.plane.tool_env(),
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def apply(self, *documents: Json, check: bool = True) -> subprocess.CompletedProcess[str]:
        manifest = yaml.safe_dump_all(documents, sort_keys=False)
        return self.kubectl("apply", "-f", "-", stdin=manifest, check=check)

    def get(self, *args: str) -> Json:
        return typing.cast(Json, json.loads(self.kubectl("get", *args, "-o", "json").stdout))

    def pods(self, selector: str) -> list[Json]:
        return list(self.get("pods", "--selector", selector)["items"])

    def wait_for(
        self, check: typing.Callable[[], typing.Any], what: str, timeout: float = 120
    ) -> typing.Any:
        return waiting.eventually_sync(check, timeout=timeout, interval=0.2, what=what)

    def pod_folder(self, pod: Json) -> pathlib.Path:
        """The kubelet's folder for a pod: its containers' logs, and their ``HOME``."""
        meta = pod["metadata"]
        folder = f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        return self.plane.state / "kubelet" / "pods" / folder

    def pod_log(self, pod: Json, container: str | None = None) -> str:
        """A container's output, from the kubelet's folder (there is no `kubectl logs`: that
        needs a kubelet API server). It outlives the pod."""
        name = container or pod["spec"]["containers"][0]["name"]
        path = self.pod_folder(pod) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def ready(pod: Json) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def pid(pod: Json) -> int:
    """The process of the pod's first container (the kubelet's container ID is its PID)."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    return int(container_id.removeprefix("process://"))


def tests_support() -> pathlib.Path:
    return control_plane.TESTS_DIR / "support"
