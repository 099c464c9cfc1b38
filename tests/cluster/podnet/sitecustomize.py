"""Gives each pod's Python processes their own address, as a network namespace would.

The process kubelet puts this folder first on every pod's PYTHONPATH, so Python imports it at
start-up. Pods share the host's network, so two replicas that both listen on ``0.0.0.0:9090``
would collide; each pod is instead given an address of its own in 127.0.0.0/8 (all of which
Linux routes to loopback) in ``KUBELET_POD_IP``, and a bind to the IPv4 wildcard is narrowed
to that address. Same port, different pods, no collision; the probes and the pod's status use
the same address. Outgoing connections and explicit binds are left alone.
"""

from __future__ import annotations

import os
import socket
import typing

_POD_IP = os.environ.get("KUBELET_POD_IP")

if _POD_IP:
    _bind = socket.socket.bind

    def _bind_in_pod(self: socket.socket, address: typing.Any, /) -> None:
        if self.family == socket.AF_INET and address[0] in ("", "0.0.0.0"):
            address = (_POD_IP, *address[1:])
        _bind(self, address)

    socket.socket.bind = _bind_in_pod  # type: ignore[method-assign,assignment]
