"""The chart's web UI (``ui.enabled``, ``jobqueue ui``) on the test control plane, shared by
the e2e tests of the chart (the process kubelet) and of the real node: the Secret of its
tokens, its pod once its Deployment is available, and what it answers with and without a
token."""

from __future__ import annotations

import base64
import dataclasses
import secrets
import typing
import urllib.error
import urllib.request

from cluster import kubectl

Json = kubectl.Json
SECRET: typing.Final = "queue-ui"


@dataclasses.dataclass(frozen=True)
class Tokens:
    admin: str
    viewer: str


def tokens_secret(kube: kubectl.Kube) -> Tokens:
    """The Secret ``ui.auth.existingSecret`` names, with new tokens under the chart's default
    keys."""
    tokens = Tokens(secrets.token_hex(16), secrets.token_hex(16))
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "stringData": {"admin-token": tokens.admin, "viewer-token": tokens.viewer},
        }
    )
    return tokens


def available_pod(kube: kubectl.Kube, release: str) -> Json:
    """The UI's one pod, once the release's UI Deployment is available."""
    deployment = f"{release}-jobqueue-ui"

    def available() -> bool:
        conditions = kube.get("deployment", deployment).get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    kube.wait_for(available, f"the UI's Deployment {deployment} available")
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=ui"
    [pod] = [
        found for found in kube.pods(selector) if not found["metadata"].get("deletionTimestamp")
    ]
    assert kubectl.ready(pod), pod.get("status")
    return pod


def address(pod: Json) -> str:
    """``http://<pod IP>:<the UI's container port>``."""
    [container] = pod["spec"]["containers"]
    return f"http://{pod['status']['podIP']}:{container['ports'][0]['containerPort']}"


def status(url: str, headers: dict[str, str] | None = None) -> int:
    """The status of a GET, errors included (401 is an answer here, not a failure)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def check_it_asks_for_tokens(base: str, tokens: Tokens) -> None:
    """``/healthz`` without a token; ``/`` refused without one or with a wrong one, served with
    either token, as a Bearer token or as the password of HTTP Basic with any user name."""
    assert status(f"{base}/healthz") == 200
    assert status(f"{base}/") == 401, "a page without a token"
    assert status(f"{base}/", bearer(secrets.token_hex(16))) == 401, "a wrong Bearer token"
    assert status(f"{base}/", basic("admin", "not-the-token")) == 401, "a wrong password"
    assert status(f"{base}/", bearer(tokens.admin)) == 200
    assert status(f"{base}/", basic("anyone", tokens.admin)) == 200
    assert status(f"{base}/", bearer(tokens.viewer)) == 200
    assert status(f"{base}/", basic("viewer", tokens.viewer)) == 200
