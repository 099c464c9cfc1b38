"""The child processes of a rig (the control plane's, the real node's): each started in a
session of its own with its output in a log file, waited for with a deadline that also
fails at once if one of them exits, and stopped with SIGTERM, then SIGKILL for its group."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import typing

import waiting

from cluster import api


def free_port() -> int:
    """A port free on loopback now, for a child to listen on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Children:
    """``failure`` is the exception raised when a child exits while it is waited for."""

    def __init__(self, logs: pathlib.Path, failure: type[Exception]) -> None:
        self.logs = logs
        self.failure = failure
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C in `make cluster` reaches us, not them
            )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, what: str, check: typing.Callable[[], object], timeout: float) -> None:
        """Until ``check()`` is true (an OSError or API error counts as not yet)."""

        def alive_and_ready() -> object:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise self.failure(
                        f"{name} exited with {process.returncode} while waiting for {what}:\n"
                        + self.log_tail(name)
                    )
            try:
                return check()
            except (OSError, api.ApiError):
                return False

        waiting.eventually_sync(alive_and_ready, timeout=timeout, interval=0.1, what=what)

    def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL to its process group if it has not ended in 15 s."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        """Every child, the last started first."""
        for name in reversed(list(self.processes)):
            self.stop(name)
