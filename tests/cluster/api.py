"""A small HTTPS JSON client for the test API server: what the control-plane set-up and the
process kubelet need (get, list, create, patch, delete), with the admin client certificate
or a bearer token, and nothing cached, so every call sees the server's current state."""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import ssl
import typing
import urllib.error
import urllib.parse
import urllib.request

Json = dict[str, typing.Any]


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body

    @property
    def reason(self) -> str:
        try:
            return str(json.loads(self.body).get("reason", ""))
        except ValueError:
            return ""


@dataclasses.dataclass(frozen=True)
class Credentials:
    server: str
    ca_cert: pathlib.Path
    client_cert: pathlib.Path | None = None
    client_key: pathlib.Path | None = None
    token: str | None = None


class Client:
    def __init__(self, credentials: Credentials, timeout: float = 30.0):
        self.credentials = credentials
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(credentials.ca_cert))
        if credentials.client_cert and credentials.client_key:
            self._context.load_cert_chain(credentials.client_cert, credentials.client_key)

    def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Json:
        url = self.credentials.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as error:
            raise ApiError(
                error.code, method, path, error.read().decode(errors="replace")
            ) from None
        return typing.cast(Json, json.loads(raw)) if raw else {}

    def get(self, path: str, **query: str) -> Json:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: Json) -> Json:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Json) -> Json:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Json | None = None) -> Json:
        return self.request("DELETE", path, body)

    def get_text(self, path: str) -> str:
        """A non-JSON endpoint such as ``/readyz``."""
        request = urllib.request.Request(self.credentials.server + path)
        with urllib.request.urlopen(request, context=self._context, timeout=self.timeout) as r:
            return typing.cast(bytes, r.read()).decode()


def kubeconfig(server: str, ca_cert: pathlib.Path, user: str, user_entry: dict[str, str]) -> Json:
    """A one-context kubeconfig with the CA and credentials inline, so it needs no other file."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "jobqueue-test",
                "cluster": {"server": server, "certificate-authority-data": inline_file(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [
            {
                "name": "jobqueue-test",
                "context": {"cluster": "jobqueue-test", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "jobqueue-test",
    }


def inline_file(path: pathlib.Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
