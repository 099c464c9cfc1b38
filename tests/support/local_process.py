"""What the e2e tests do with the programs they start themselves (the operator, Prometheus):
ask whether one answers on HTTP, and stop one as the kubelet would."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
import urllib.request


def answers(url: str) -> bool:
    """Whether a GET of ``url`` returns 200 within 2 seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as got:
            return bool(got.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; SIGKILL to its whole session (started with ``start_new_session``) if it
    does not end within 30 seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
