"""The few Kubernetes API calls the operator makes besides kopf's own: server-side apply of
the owned objects, a Secret read, the worker pods' deletion cost and the status patch; and
those of ``release`` (a JobQueue's deletion before the operator goes).

JSON in, JSON out, through the ``kubernetes`` client's transport and credentials (in the
cluster the ServiceAccount's, outside it ``$KUBECONFIG``'s). The client is blocking, so each
call runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import typing

import kubernetes

from jobqueue_operator import resource

Json = dict[str, typing.Any]

FIELD_MANAGER: typing.Final = "jobqueue-operator"
REQUEST_TIMEOUT: typing.Final = 30.0


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


def load_configuration() -> kubernetes.client.ApiClient:
    """An API client with the in-cluster credentials, else those of the kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient()


class Api:
    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Json:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        request = self.client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
        data = response.read()  # type: ignore[no-untyped-call]
        answer = json.loads(data) if data else {}
        if response.status >= 400:
            cls = NotFoundError if response.status == 404 else ApiError
            raise cls(
                response.status,
                str(answer.get("reason", "")),
                str(answer.get("message", data[:500])),
            )
        return typing.cast(Json, answer)

    async def call(self, method: str, path: str, **options: typing.Any) -> Json:
        """One request (``body``, ``query``, ``content_type`` as ``_call`` takes them), in a
        thread."""
        return await asyncio.to_thread(self._call, method, path, **options)

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
