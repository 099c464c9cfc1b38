"""Fixtures for the tests marked ``cluster``: one real control plane per test run (see
``tests/cluster``), and a namespace of each test's own in it."""

from __future__ import annotations

import collections.abc
import itertools
import os
import shutil

import operator_rig
import pytest

from cluster import control_plane, kubectl

_namespaces = itertools.count(1)
_measured: list[str] = []


@pytest.fixture
def measure() -> collections.abc.Callable[[str, float], None]:
    """Records a time measured in the rig; the run's summary lists them all."""

    def record(what: str, seconds: float) -> None:
        _measured.append(f"{what}: {seconds:.2f} s")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _measured:
        terminalreporter.section("times measured in the rig")
        for line in _measured:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kube_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> collections.abc.Iterator[control_plane.ControlPlane]:
    """Builds the binaries if the cache has none (``make e2e`` does that before pytest, so no
    test's timeout pays for it), then starts the control plane and waits for it with a
    deadline. The logs of the control plane and of every pod are kept in pytest's temporary
    folder (``cluster-logs0``) for a look after a failure."""
    plane = control_plane.started()
    try:
        yield plane
    finally:
        kept = tmp_path_factory.mktemp("cluster-logs")
        shutil.copytree(plane.logs, kept / "control-plane")
        pods = plane.state / "kubelet" / "pods"
        if pods.exists():  # the tokens are of no use once the cluster is gone: left out
            shutil.copytree(pods, kept / "pods", ignore=shutil.ignore_patterns("serviceaccount"))
        plane.stop()


@pytest.fixture
def kube(kube_cluster: control_plane.ControlPlane) -> collections.abc.Iterator[kubectl.Kube]:
    namespace = f"test-{os.getpid()}-{next(_namespaces)}"
    admin = kubectl.Kube(kube_cluster, "default")
    admin.kubectl("create", "namespace", namespace)
    kube = kubectl.Kube(kube_cluster, namespace)
    # Until the serviceaccount controller has made `default`, admission refuses every pod.
    kube.wait_for(
        lambda: kube.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
        f"the default ServiceAccount of {namespace}",
    )
    yield kube
    # The namespace controller deletes what is left, the kubelet stops the pods' processes.
    admin.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_system(kube_cluster: control_plane.ControlPlane) -> kubectl.Kube:
    """The CRD and the operator's RBAC of ``deploy/``, once per run; kubectl for
    jobqueue-system, the operator's namespace."""
    return operator_rig.install_crd_and_rbac(kube_cluster)
