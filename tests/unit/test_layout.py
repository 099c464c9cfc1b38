"""The source layout: both packages import, and neither shadows the standard library."""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys
import sysconfig


def test_operator_is_still_the_standard_module() -> None:
    # A fresh interpreter: this one may have imported operator before any path changes.
    done = subprocess.run(
        [sys.executable, "-c", "import jobqueue_operator, operator; print(operator.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=pathlib.Path(__file__).parents[2],
    )
    location = pathlib.Path(done.stdout.strip())
    assert location.parent == pathlib.Path(sysconfig.get_paths()["stdlib"])


def test_both_packages_import_without_path_tricks() -> None:
    for name in ("jobqueue", "jobqueue_operator"):
        module = importlib.import_module(name)
        assert module.__file__ is not None
    assert importlib.import_module("jobqueue_operator").KIND == "JobQueue"
