"""A small HTTP server in the worker's event loop: ``/metrics`` for Prometheus, ``/healthz``
(liveness) and ``/readyz`` (readiness) for Kubernetes probes.

It runs on the same loop as the worker on purpose: if the loop is blocked, ``/healthz``
stops answering and the kubelet restarts the pod.
"""

from __future__ import annotations

import asyncio
import collections.abc
import logging
import typing

import prometheus_client
import prometheus_client.registry

logger = logging.getLogger("jobqueue.probes")

Check: typing.TypeAlias = collections.abc.Callable[[], tuple[bool, str]]
_REASONS: typing.Final = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Unavailable",
}


class ProbeServer:
    """Serves the three endpoints; ``healthy`` and ``ready`` return (ok, explanation)."""

    def __init__(
        self,
        healthy: Check,
        ready: Check,
        host: str = "0.0.0.0",  # noqa: S104  (a pod's probes and scrapes come from outside it)
        port: int = 9090,
        registry: prometheus_client.registry.CollectorRegistry | None = None,
    ):
        self.registry = registry or prometheus_client.REGISTRY
        self.healthy = healthy
        self.ready = ready
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Start listening; returns the port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        port: int = self._server.sockets[0].getsockname()[1]
        logger.info("[Worker] Serving /metrics, /healthz and /readyz on port %d", port)
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=10)
            while (await asyncio.wait_for(reader.readline(), timeout=10)).strip():
                pass  # headers: none matter here
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = self._respond(method, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return (
                200,
                prometheus_client.CONTENT_TYPE_LATEST,
                prometheus_client.generate_latest(self.registry),
            )
        checks = {"/healthz": self.healthy, "/readyz": self.ready}
        if path in checks:
            ok, why = checks[path]()
            return (200 if ok else 503), "text/plain", f"{why}\n".encode()
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"
