"""The chaos suite, short form: real worker processes, thousands of jobs, random kill -9,
SIGTERM and double SIGTERM, database restarts and read-only windows, cancels and retries
as an operator would make them (retries, and pausing the queue, through the web UI's
API), a schedule ticking each second, poison mixed in
(``tests/support/chaos_suite.py``). ``make chaos`` runs the long form and prints its
figures."""

from __future__ import annotations

import pathlib
import shutil
import tempfile

import chaos_suite
import pytest


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_under_chaos_every_job_ends_once_and_never_runs_twice_at_once() -> None:
    # Outside pytest's private tmp tree: the embedded server's own user must enter it.
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-chaos-"))
    try:
        report = chaos_suite.Chaos(folder, chaos_suite.Settings()).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(report.summary())
    assert report.jobs >= 2000
    assert all(count > 0 for count in report.faults.values()), report.summary()
    assert report.unfinished == 0, report.summary()
    assert report.overlaps == 0, report.summary()
    assert report.over_limit == 0, report.summary()
    assert report.most_at_once.get("tenant-0") == 1, report.summary()
    assert max(report.most_at_once.values()) == chaos_suite.PER_TENANT, report.summary()
    assert report.runs_after_cancel == 0, report.summary()
    assert report.cancelled > 0, report.summary()
    assert report.retried > 0, report.summary()
    assert report.unique_keys > 0, report.summary()
    assert report.duplicate_holders == 0, report.summary()
    assert report.ticks >= 15, report.summary()
    assert report.missed_ticks == 0, report.summary()
    assert report.ui_actions > 0, report.summary()
    assert report.unaudited_actions == 0, report.summary()
    assert report.stuck_paused == 0, report.summary()
    assert report.reruns.get("snoozed", 0) > 0, report.summary()
    assert report.unexplained_reruns == 0, report.summary()
    assert report.failed_without_reason == 0, report.summary()
    assert report.wrong_outcome == 0, report.summary()
    assert report.done + report.failed + report.cancelled == report.jobs
    assert report.executions >= report.jobs
