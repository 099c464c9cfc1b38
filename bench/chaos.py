#!/usr/bin/env python3
"""The chaos suite, long form: more jobs, more workers, minutes of faults.

The same harness as the short form in ``make test`` (``tests/support/chaos_suite.py``): worker
processes on a private embedded PostgreSQL, with ``kill -9``, SIGTERM, double SIGTERM,
database restarts and read-only windows drawn from a seeded schedule, poisoned payloads
mixed in. It prints what happened and the proof: jobs done and failed (each failure with a
reason), executions, re-runs by cause, overlapping executions and unexplained re-runs (both
must be 0), and the time from a ``kill -9`` to the next run of each job the killed worker
held (the workers run with a stale threshold of 5 s). Exits 1 when a check fails.

Run from the repository root (``make chaos`` runs it with the defaults)::

    .venv/bin/python bench/chaos.py --jobs 20000 --workers 6 --duration 300
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))  # the suite's cluster.children
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests" / "support"))

import chaos_suite  # found through the path set just above


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=12_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of faults")
    parser.add_argument("--fault-every", type=float, default=1.8, help="seconds, on average")
    parser.add_argument("--work-ms", type=int, default=300, help="average work per job")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = chaos_suite.Settings(
        jobs=args.jobs,
        workers=args.workers,
        concurrency=args.concurrency,
        duration=args.duration,
        fault_every=args.fault_every,
        work_ms=args.work_ms,
        seed=args.seed,
        finish_within=max(600.0, args.duration),
    )
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-chaos-"))
    try:
        report = chaos_suite.Chaos(folder, settings).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(report.summary())
    broken = (
        report.unfinished
        + report.overlaps
        + report.runs_after_cancel
        + report.duplicate_holders
        + report.unexplained_reruns
        + report.failed_without_reason
        + report.wrong_outcome
        + report.missed_ticks
        + report.unaudited_actions
        + report.stuck_paused
    )
    print("PASS" if broken == 0 else "FAIL")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
