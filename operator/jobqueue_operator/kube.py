"""The few Kubernetes API calls the operator makes besides kopf's own: server-side apply of
the owned objects, a Secret read, the worker pods' deletion cost and the status patch; and
those of ``release`` (a JobQueue's deletion before the operator goes).

JSON in, JSON out, over aiohttp (kopf's own HTTP client), with the credentials of ``login``:
in a pod the ServiceAccount's, at the address ``KUBERNETES_SERVICE_HOST`` names (no cluster
DNS needed), else ``$KUBECONFIG``'s. kopf logs in the same way (``handlers.login``), so one
set of credentials serves both, and the operator needs no Kubernetes client library: the
official one would double the operator image.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import typing

import aiohttp
import kopf

from jobqueue_operator import resource

Json = dict[str, typing.Any]

FIELD_MANAGER: typing.Final = "jobqueue-operator"
REQUEST_TIMEOUT: typing.Final = 30.0
SERVICE_ACCOUNT: typing.Final = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(Exception):
    """A call the API server refused; ``status`` is the HTTP status, ``reason`` and the
    message come from its ``Status`` answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    pass


def login(service_account: pathlib.Path = SERVICE_ACCOUNT) -> kopf.ConnectionInfo:
    """The API server and credentials: the pod's ServiceAccount when there is one (its token
    read anew at each login, as the kubelet rotates it), else the current context of
    ``$KUBECONFIG`` (or ``~/.kube/config``)."""
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    token = service_account / "token"
    if host and port and token.exists():
        namespace = service_account / "namespace"
        ca = service_account / "ca.crt"
        return kopf.ConnectionInfo(
            server=f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}",
            ca_path=str(ca) if ca.exists() else None,
            token=token.read_text().strip(),
            default_namespace=namespace.read_text().strip() if namespace.exists() else None,
        )
    found = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    if found is None:
        raise kopf.LoginError("no ServiceAccount token and no kubeconfig to log in with")
    return found


class Api:
    """The API server at ``login()``'s address; logs in again once when a call is refused
    as unauthenticated (a rotated token). ``close()`` when done."""

    def __init__(self, connect: typing.Callable[[], kopf.ConnectionInfo] = login) -> None:
        self._connect = connect
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            info = self._connect()
            headers = {"Accept": "application/json"}
            if info.token:
                headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
            self._server = info.server.rstrip("/")
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Json:
        """One request; its JSON answer, or ``ApiError`` (``NotFoundError`` for 404)."""
        data = None if body is None else json.dumps(body)
        for attempt in range(2):
            session = self._open()
            async with session.request(
                method,
                self._server + path,
                params=query,
                data=data,
                headers={"Content-Type": content_type},
            ) as response:
                text = await response.text()
                if response.status == 401 and attempt == 0:
                    await self.close()  # log in again: the token may have been rotated
                    continue
                answer = json.loads(text) if text else {}
                if response.status >= 400:
                    cls = NotFoundError if response.status == 404 else ApiError
                    raise cls(
                        response.status,
                        str(answer.get("reason", "")) if isinstance(answer, dict) else "",
                        str(answer.get("message", text[:500]))
                        if isinstance(answer, dict)
                        else text[:500],
                    )
                return typing.cast(Json, answer)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def apply(self, manifest: Json) -> Json:
        """Server-side apply as ``jobqueue-operator``: the fields in ``manifest`` become the
        operator's (taken over from anyone else who set them), the rest stay the user's."""
        meta = manifest["metadata"]
        return await self.call(
            "PATCH",
            _path(manifest["apiVersion"], _plural(manifest["kind"]), meta["namespace"])
            + f"/{meta['name']}",
            body=manifest,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    async def get_deployment(self, namespace: str, name: str) -> Json | None:
        try:
            return await self.call("GET", _path("apps/v1", "deployments", namespace) + f"/{name}")
        except NotFoundError:
            return None

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """The decoded value; ``NotFoundError`` for a missing Secret, ``KeyError`` for a
        missing key."""
        secret = await self.call("GET", _path("v1", "secrets", namespace) + f"/{name}")
        data = secret.get("data") or {}
        if key not in data:
            raise KeyError(key)
        return base64.b64decode(data[key]).decode()

    async def list_pods(self, namespace: str, selector: str) -> list[Json]:
        answer = await self.call(
            "GET", _path("v1", "pods", namespace), query={"labelSelector": selector}
        )
        return list(answer.get("items", []))

    async def patch_pod(self, namespace: str, name: str, patch: Json) -> None:
        await self.call(
            "PATCH",
            _path("v1", "pods", namespace) + f"/{name}",
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def get_jobqueue(self, namespace: str, name: str) -> Json | None:
        try:
            return await self.call("GET", _jobqueues(namespace) + f"/{name}")
        except NotFoundError:
            return None

    async def delete_jobqueue(self, namespace: str, name: str) -> None:
        """Asks for the deletion (background: the garbage collector takes what it owns once
        it is gone); a JobQueue already gone is fine."""
        with contextlib.suppress(NotFoundError):
            await self.call("DELETE", _jobqueues(namespace) + f"/{name}")

    async def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> None:
        """Replaces the finalizers, if the JobQueue is still at ``resource_version`` (a
        conflict otherwise: someone changed them meanwhile)."""
        await self.call(
            "PATCH",
            _jobqueues(namespace) + f"/{name}",
            body={"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
            content_type="application/merge-patch+json",
        )

    async def patch_status(self, namespace: str, name: str, status: Json) -> None:
        await self.call(
            "PATCH",
            _jobqueues(namespace) + f"/{name}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )


def _plural(kind: str) -> str:
    return {"Deployment": "deployments", "Service": "services"}[kind]


def _jobqueues(namespace: str) -> str:
    return _path(f"{resource.API_GROUP}/{resource.API_VERSION}", resource.PLURAL, namespace)


def _path(api_version: str, plural: str, namespace: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"
