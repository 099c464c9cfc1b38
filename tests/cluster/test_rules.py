"""The control plane's rules that need no Go and no cluster: they run under `make test`."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from cluster import kubelet, versions


def test_the_pins_are_read_from_the_go_module_files() -> None:
    assert versions.kubernetes_version().startswith("v1.")
    assert versions.etcd_version().startswith("v3.6.")
    key = versions.binaries_key("go1.26.0", "flags")
    assert key.startswith(f"k8s-{versions.kubernetes_version()}-etcd-{versions.etcd_version()}-")
    assert key != versions.binaries_key("go1.26.0", "other flags")


def test_a_staging_replace_that_does_not_match_the_pin_is_refused(
    tmp_path: pathlib.Path,
) -> None:
    go_mod = (versions.KUBERNETES_MODULE_DIR / "go.mod").read_text()
    staging = "v0." + versions.kubernetes_version().removeprefix("v1.")
    bad = tmp_path / "go.mod"
    bad.write_text(go_mod.replace(f"k8s.io/api {staging}", "k8s.io/api v0.1.0"))
    with pytest.raises(versions.PinError, match=r"k8s\.io/api v0\.1\.0"):
        versions.kubernetes_version(bad)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(A)-$(B)", "1-$(B)"),  # unknown references stay as written
        ("$$(A)", "$(A)"),  # $$ escapes
        ("plain", "plain"),
    ],
)
def test_dependent_environment_variables_expand_as_in_kubernetes(text: str, expanded: str) -> None:
    assert kubelet.expand(text, {"A": "1"}) == expanded


def test_the_image_chooses_the_program() -> None:
    worker = kubelet.command_for({"image": "example/jobqueue-worker:1", "args": ["worker"]})
    assert worker == [str(kubelet.VENV_BIN / "jobqueue"), "worker"]
    operator = kubelet.command_for({"image": "jobqueue-operator"})
    assert operator == [str(kubelet.VENV_BIN / "python"), "-m", "jobqueue_operator"]
    replaced = kubelet.command_for({"image": "python:3", "command": ["python", "-c", "pass"]})
    assert replaced == [str(kubelet.VENV_BIN / "python"), "-c", "pass"]
    with pytest.raises(kubelet.ContainerConfigError, match="no local command") as unknown:
        kubelet.command_for({"image": "busybox"})
    assert unknown.value.reason == "ErrImagePull"


def test_a_pods_wildcard_bind_lands_on_its_own_address() -> None:
    bound = subprocess.run(
        [
            sys.executable,
            "-c",
            "import socket; s = socket.socket(); s.bind(('0.0.0.0', 0)); print(s.getsockname()[0])",
        ],
        env={**os.environ, "PYTHONPATH": str(kubelet.PODNET), "KUBELET_POD_IP": "127.1.0.77"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert bound.stdout.strip() == "127.1.0.77"
