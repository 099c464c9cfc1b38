"""The Grafana dashboards (issue 12): ``deploy/grafana/*.json`` are kept readable (2-space
indented JSON, as ``json.dumps(..., indent=2)`` writes it), have the panels the issue lists
and the variables namespace, jobqueue and queue, and every query (panels and variables)
parses as PromQL and reads only metrics named by the constants of ``jobqueue.metrics``."""

from __future__ import annotations

import json
import pathlib

import deploy_files
import pytest

DASHBOARDS = deploy_files.dashboard_files()


def test_there_are_dashboards() -> None:
    assert [path.name for path in DASHBOARDS] == ["jobqueue-queues.json", "jobqueue-scaling.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_json_is_kept_readable(path: pathlib.Path) -> None:
    assert path.read_text() == json.dumps(deploy_files.load_dashboard(path), indent=2) + "\n", (
        "rewrite it with json.dumps(board, indent=2) plus a newline"
    )


def test_uids_are_unique_and_stable() -> None:
    uids = [deploy_files.load_dashboard(path)["uid"] for path in DASHBOARDS]
    assert uids == [path.stem for path in DASHBOARDS]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_variables_and_their_use(path: pathlib.Path) -> None:
    board = deploy_files.load_dashboard(path)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "jobqueue", "queue"}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in deploy_files.panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            # Every query follows the namespace and JobQueue chosen; queue where it has one.
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
            assert 'jobqueue=~"$jobqueue"' in target["expr"], panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_panels_do_not_overlap(path: pathlib.Path) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in deploy_files.panels(deploy_files.load_dashboard(path)):
        place = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(place["x"], place["x"] + place["w"])
            for y in range(place["y"], place["y"] + place["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        assert place["x"] + place["w"] <= 24
        taken |= cells


def test_the_panels_of_the_issue() -> None:
    # What the issue asks the dashboards to show, each by the metric that shows it.
    wanted = {
        "queue depth by status and type": "jobqueue_queue_jobs",
        "enqueued vs completed": "jobqueue_worker_jobs_total",
        "failures and retries": "jobqueue_worker_jobs_total",
        "job duration percentiles by type": "jobqueue_worker_job_duration_seconds_bucket",
        "queue wait percentiles by type": "jobqueue_worker_job_queue_wait_seconds_bucket",
        "workers current vs desired": "jobqueue_operator_desired_replicas",
        "workers desired vs max": "jobqueue_operator_max_replicas",
        "scale events": "jobqueue_operator_scale_events_total",
        "stale jobs rescued": "jobqueue_operator_rescued_jobs_total",
        "oldest ready age": "jobqueue_queue_oldest_ready_age_seconds",
        # Issue 24, part 4: vacuum health.
        "dead vs live rows by table": "jobqueue_database_table_dead_tuples",
        "table and index size": "jobqueue_database_table_index_size_bytes",
        "time since last vacuum": "jobqueue_database_table_last_vacuum_age_seconds",
        "vacuums by table": "jobqueue_database_table_vacuums_total",
        "oldest transaction holding back the xmin horizon": (
            "jobqueue_database_oldest_transaction_age_seconds"
        ),
        "xmin horizon age in transactions": "jobqueue_database_xmin_horizon_age_transactions",
    }
    titles = {
        panel["title"].lower(): {name for t in panel["targets"] for name in _names(t["expr"])}
        for path in DASHBOARDS
        for panel in deploy_files.panels(deploy_files.load_dashboard(path))
    }
    for words, metric in wanted.items():
        matching = [t for t in titles if all(w in t for w in words.split() if len(w) > 3)]
        assert matching, f"no panel for {words!r}"
        assert any(metric in titles[t] for t in matching), f"{words!r} does not read {metric}"


def _names(expression: str) -> set[str]:
    return deploy_files.promql_metric_names(deploy_files.promql(expression))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_query_reads_only_metrics_that_exist(path: pathlib.Path) -> None:
    exposed = deploy_files.exposed_metric_names()
    used: set[str] = set()
    for expression in deploy_files.expressions(deploy_files.load_dashboard(path)):
        names = _names(expression)
        assert names, f"no metric in {expression!r}"
        assert not names - exposed.keys(), f"unknown metrics {sorted(names - exposed.keys())}"
        used |= names
    assert used


def test_the_dashboards_show_every_metric_that_matters() -> None:
    # Every constant shows up somewhere, except the worker's identity (an info metric).
    exposed = deploy_files.exposed_metric_names()
    shown = {
        exposed[name]
        for path in DASHBOARDS
        for expression in deploy_files.expressions(deploy_files.load_dashboard(path))
        for name in _names(expression)
    }
    assert set(exposed.values()) - shown == {"jobqueue_worker"}
