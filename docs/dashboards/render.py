"""Draws the Grafana dashboards of ``deploy/grafana/`` from a real run: one PNG per dashboard,
its panels where the dashboard puts them (Grafana's 24-column grid), each titled as in
Grafana, its series named by the target's legend format.

The data are the ``query_range`` results that ``tests/e2e/test_monitoring.py`` saves, one
JSON file per dashboard, when ``JOBQUEUE_DASHBOARD_DATA`` names a folder: a real Prometheus
scraping the operator and workers of an e2e run on the test control plane. ``make
dashboards`` runs that test and then this script. matplotlib is not a dependency of the
project: it comes from ``bench/requirements-versus.txt`` (``.venv-bench``).

    python docs/dashboards/render.py DATA_FOLDER [OUTPUT_FOLDER]
"""

from __future__ import annotations

import argparse
import collections.abc
import importlib
import json
import math
import pathlib
import re
import sys
import typing

Json = dict[str, typing.Any]
HERE: typing.Final = pathlib.Path(__file__).resolve().parent
GRID_COLUMNS: typing.Final = 24  # Grafana's
INCHES_PER_COLUMN: typing.Final = 0.75
INCHES_PER_ROW: typing.Final = 0.42
# Grafana's units as the axis says them.
UNITS: typing.Final = {
    "s": "seconds",
    "short": "",
    "none": "",
    "ops": "per second",
    "reqps": "per second",
    "percentunit": "ratio",
}


def _matplotlib() -> tuple[typing.Any, typing.Any]:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise SystemExit(
            "render.py needs matplotlib, which is not a project dependency: run `make"
            " dashboards` (it uses .venv-bench, from bench/requirements-versus.txt)"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    return matplotlib, importlib.import_module("matplotlib.pyplot")


def legend(template: str, labels: collections.abc.Mapping[str, str]) -> str:
    """Grafana's legend format: ``{{label}}`` replaced by the series' value of it."""
    if not template:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def on_grid(series: Json, start: float, end: float, step: float) -> tuple[list[float], list[float]]:
    """The series at every step of the run, NaN where it had no value (a gap, as Grafana
    draws it), times in seconds from the start."""
    values = {round((float(t) - start) / step): float(v) for t, v in series["values"]}
    steps = round((end - start) / step) + 1
    times = [n * step for n in range(steps)]
    return times, [values.get(n, math.nan) for n in range(steps)]


def draw(board: Json, pyplot: typing.Any, output: pathlib.Path) -> int:
    """One dashboard to ``output``; returns how many series it drew."""
    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = pyplot.figure(
        figsize=(GRID_COLUMNS * INCHES_PER_COLUMN, rows * INCHES_PER_ROW + 0.8),
        layout="constrained",
    )
    grid = figure.add_gridspec(rows, GRID_COLUMNS)
    drawn = 0
    for panel in panels:
        place = panel["gridPos"]
        axes = figure.add_subplot(
            grid[place["y"] : place["y"] + place["h"], place["x"] : place["x"] + place["w"]]
        )
        axes.set_title(panel["title"], loc="left", fontsize=11)
        for target in panel["targets"]:
            for series in sorted(target["series"], key=lambda s: sorted(s["metric"].items())):
                times, values = on_grid(series, board["start"], board["end"], board["step"])
                axes.plot(
                    times,
                    values,
                    linewidth=1.4,
                    marker="o",  # a lone sample between gaps shows as a dot, as in Grafana
                    markersize=2,
                    label=legend(target["legendFormat"], series["metric"]),
                )
                drawn += 1
        unit = UNITS.get(panel.get("unit", ""), panel.get("unit", ""))
        if unit:
            axes.set_ylabel(unit, fontsize=8)
        axes.set_xlabel("seconds into the run", fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        axes.set_xlim(0, board["end"] - board["start"])
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, loc="upper left", ncols=2, framealpha=0.7)
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    figure.suptitle(
        f"{board['title']}: a {board['end'] - board['start']:.0f} s e2e run, as Prometheus"
        " recorded it (tests/e2e/test_monitoring.py)",
        fontsize=13,
    )
    figure.savefig(output, dpi=80)
    pyplot.close(figure)
    return drawn


def main(argv: collections.abc.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=pathlib.Path, help="the test's JSON files")
    parser.add_argument("output", type=pathlib.Path, nargs="?", default=HERE)
    args = parser.parse_args(argv)
    _, pyplot = _matplotlib()
    files = sorted(args.data.glob("*.json"))
    if not files:
        raise SystemExit(f"no dashboard data in {args.data}: run the monitoring e2e test first")
    for path in files:
        board: Json = json.loads(path.read_text())
        output = args.output / f"{path.stem}.png"
        drawn = draw(board, pyplot, output)
        print(f"{output}: {len(board['panels'])} panels, {drawn} series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
