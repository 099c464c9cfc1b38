"""``jobqueue demo``, the README's main command, run as a real process."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

JOBQUEUE = str(pathlib.Path(sys.executable).with_name("jobqueue"))


def demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBQUEUE, "demo", "--jobs", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )


def test_demo_on_database_url(empty_database_url: str) -> None:
    done = demo({**os.environ, "DATABASE_URL": empty_database_url})
    assert done.returncode == 0, done.stderr
    assert "enqueued 6 jobs" in done.stdout
    assert done.stdout.count(" done ") == 5
    assert "LookupError: no documentation topic named 'no-such-topic'" in done.stdout
    assert "[Worker] Starting worker demo-worker" in done.stderr
    assert "queue stats: {'pending': 0, 'running': 0, 'failed': 1, 'done': 5}" in done.stdout


def test_demo_starts_its_own_postgres() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = demo(env)
    assert done.returncode == 0, done.stderr
    assert "starting an embedded PostgreSQL" in done.stdout
    assert "'done': 5" in done.stdout
