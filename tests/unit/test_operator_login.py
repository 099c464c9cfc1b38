"""How the operator logs in (``jobqueue_operator.kube.login``), for kopf and for its own
calls: a pod's ServiceAccount at the address of ``KUBERNETES_SERVICE_HOST``, else the
kubeconfig. The calls themselves are proven against the real API server by ``make e2e``."""

from __future__ import annotations

import json
import pathlib

import kopf
import pytest

from jobqueue_operator import kube


def service_account(folder: pathlib.Path, *, ca: bool = True) -> pathlib.Path:
    folder.mkdir()
    (folder / "token").write_text("token-1\n")
    (folder / "namespace").write_text("jobqueue-system\n")
    if ca:
        (folder / "ca.crt").write_text("not read here\n")
    return folder


def test_in_a_pod_the_service_account_at_the_service_address(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = service_account(tmp_path / "sa")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = kube.login(account)
    assert (info.server, info.token, info.default_namespace) == (
        "https://10.0.0.1:443",
        "token-1",
        "jobqueue-system",
    )
    assert info.ca_path == str(account / "ca.crt")
    # The token is read at each login: a rotated one is picked up.
    (account / "token").write_text("token-2")
    assert kube.login(account).token == "token-2"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert kube.login(account).server == "https://[fd00::1]:443"


def test_elsewhere_the_kubeconfig(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "current-context": "test",
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "from-kubeconfig"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    info = kube.login(tmp_path / "no-service-account")
    assert (info.server, info.token) == ("https://127.0.0.1:6443", "from-kubeconfig")
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(kopf.LoginError, match="no ServiceAccount token and no kubeconfig"):
        kube.login(tmp_path / "no-service-account")
