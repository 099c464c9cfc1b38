"""``make cluster``: a control plane in the foreground until Ctrl-C or SIGTERM.

Builds the binaries first if the cache has none for the pinned versions, fetches kubectl and
helm, starts everything on loopback with free ports, prints how to reach it, and on Ctrl-C
or SIGTERM stops everything and removes its state. With ``--node`` (``make cluster
NODE=1``, as root) a real node joins it too (``cluster.node``), with the images of ``make
images`` imported when they have been built.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading

from cluster import build, control_plane, images, node, versions

_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """make does not pass a SIGTERM on to the command it runs: ask Linux to send this process
    SIGTERM when its parent (make) dies, so `kill <make>` still stops the control plane."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    parser.add_argument("--node", action="store_true", help="also start a real node (root)")
    args = parser.parse_args(argv)
    stop_with_parent()
    try:
        plane = control_plane.started()
    except (build.BuildError, versions.PinError, control_plane.ControlPlaneError) as error:
        print(f"make cluster: error: {error}", file=sys.stderr)
        return 1
    real: node.RealNode | None = None
    if args.node:
        keys = plane.pki
        archives = sorted(images.cache_dir().glob("*.oci.tar"))
        real = node.RealNode(
            plane.server,
            keys.ca_cert,
            keys.admin_cert,
            keys.admin_key,
            images=archives,
            network=plane.pod_network,
        )
        try:
            real.start()
        except (build.BuildError, node.NodeError, OSError) as error:
            plane.stop()
            print(f"make cluster: error: the real node: {error}", file=sys.stderr)
            return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        print(
            f"Kubernetes {versions.kubernetes_version()} is up at {plane.server}"
            f" (started in {plane.startup_seconds:.0f}s).\n"
            f"  export KUBECONFIG={plane.kubeconfig}\n"
            f"  export PATH={plane.tools}:$PATH   # kubectl and helm\n"
            f"Logs: {plane.logs}\nCtrl-C stops it and removes its state.",
            flush=True,
        )
        if real is not None:
            print(
                f"Real node {real.name} (containerd, kubelet) Ready in {real.startup_seconds:.1f}s;"
                f" pods reach the API server at {real.pod_api_server}; logs: {real.logs}",
                flush=True,
            )
        stop.wait()
    finally:
        print("stopping...", flush=True)
        if real is not None:
            real.stop()
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
