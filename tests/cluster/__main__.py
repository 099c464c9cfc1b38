"""``make cluster``: a control plane in the foreground until Ctrl-C or SIGTERM.

Builds the binaries first if the cache has none for the pinned versions, fetches kubectl and
helm, starts everything on loopback with free ports, prints how to reach it, and on Ctrl-C
or SIGTERM stops everything and removes its state.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

from cluster import build, control_plane, versions

_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """make does not pass a SIGTERM on to the command it runs: ask Linux to send this process
    SIGTERM when its parent (make) dies, so `kill <make>` still stops the control plane."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    stop_with_parent()
    try:
        plane = control_plane.started()
    except (build.BuildError, versions.PinError, control_plane.ControlPlaneError) as error:
        print(f"make cluster: error: {error}", file=sys.stderr)
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
        stop.wait()
    finally:
        print("stopping...", flush=True)
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
