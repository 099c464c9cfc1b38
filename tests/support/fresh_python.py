"""Running a line of Python in a fresh interpreter: for what a process sees at start-up
(which modules an import loads, what it registers), which this test process cannot show."""

from __future__ import annotations

import subprocess
import sys


def printed_by(code: str) -> str:
    """What ``code`` prints, run by a new interpreter of this virtualenv."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()
