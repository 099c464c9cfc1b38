"""The control plane's rules that need no Go and no cluster: they run under `make test`."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
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


def test_a_block_where_something_still_listens_is_not_handed_out() -> None:
    first, hold = kubelet._hold_address_block()
    hold.close()
    leftover = socket.socket()  # as a pod process that outlived its kubelet would
    try:
        leftover.bind((f"127.{first}.0.9", 0))
        leftover.listen()
        assert first in kubelet._blocks_listened_on()
        block, hold = kubelet._hold_address_block()
        hold.close()
        assert block != first
    finally:
        leftover.close()


def test_recorded_pod_groups_are_killed_and_a_finished_ones_record_goes(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / kubelet.POD_GROUPS).mkdir()
    pod = subprocess.Popen(
        [sys.executable, "-c", "input()"], stdin=subprocess.PIPE, start_new_session=True
    )
    container = kubelet.Container(spec={"name": "c"}, process=pod)
    container.group_record = tmp_path / kubelet.POD_GROUPS / str(pod.pid)
    container.group_record.touch()
    kubelet.kill_recorded_pod_groups(tmp_path)
    assert pod.wait(timeout=10) == -signal.SIGKILL
    container.kill()
    assert not container.group_record.exists()
