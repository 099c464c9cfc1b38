"""The dashboards and alerts against a real Prometheus (issue 12).

Debian's ``prometheus`` scrapes an e2e run on the test control plane: the operator as a pod
(``deploy/operator.yaml``, behind the Service the chart gives it) and the worker pods of one
JobQueue, both found by Kubernetes service discovery under Prometheus' own ServiceAccount
and labelled as the chart's ServiceMonitors label them (``prometheus_server``). The repo's
``deploy/prometheus/rules.yaml`` is loaded as is.

The run gives every panel data: a burst with failing, retried and delayed jobs scales the
workers up to the cap and down again; a worker killed with ``kill -9`` while it holds a job
(its jobs are handed back by the workers' rescue loop); a frozen worker (``SIGSTOP``: alive
to the kubelet, no heartbeats, no other worker) whose job only the operator can hand back,
and which finds its job lost when it thaws; a database outage (workers' and operator's
errors); finished jobs past their retention (purged); a vacuum of ``jobs`` (the vacuum
panels). Every wait is on a condition, most on Prometheus answering with the series the
next step needs.

Then every query of every dashboard panel and variable, with the variables set to the run's
namespace, JobQueue and queue, and every alert expression must parse in Prometheus and
return series over the run; for the alerts, whose thresholds the run does not reach, each
part and the expression without its thresholds (joins kept) must. A query whose metric is
renamed must be reported empty, so the check can fail.

With ``JOBQUEUE_DASHBOARD_DATA`` naming a folder, the panels' ``query_range`` results are
saved there as JSON, one file per dashboard, for ``docs/dashboards/render.py`` to draw
(``make dashboards``).
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import time
import typing

import deploy_files
import operator_rig as rig
import prometheus_server
import psycopg
import pytest
import waiting
import yaml

import jobqueue
from cluster import api, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(360)]

Json = kubectl.Json
Measure = collections.abc.Callable[[str, float], None]
NAME: typing.Final = "watched"
QUEUE: typing.Final = "default"
OPERATOR_SERVICE: typing.Final = "jobqueue-operator-metrics"  # the chart's name for it
OPERATOR_LABELS: typing.Final = {
    "app.kubernetes.io/name": "jobqueue-operator",
    "app.kubernetes.io/component": "operator",
}
# The range queries' resolution, and what Grafana's interval variables become. Grafana
# makes $__rate_interval at least four scrape intervals (4 s here); 10 s smooths the
# pictures and still reacts within the run.
STEP: typing.Final = 2.0
DATA_FOLDER_ENV: typing.Final = "JOBQUEUE_DASHBOARD_DATA"
# The operator's stale-job threshold, well above the workers' (3 s): while a worker lives,
# its rescue loop hands a dead worker's jobs back first; the operator's comes when none can.
OPERATOR_STALE: typing.Final = 10
WAIT: typing.Final = 120.0  # for any one step of the run, on two busy cores


# --- Prometheus under its own ServiceAccount ------------------------------------------------


def prometheus_client(kube: kubectl.Kube, operator_system: kubectl.Kube) -> api.Client:
    """An API client with a token of a ``prometheus`` ServiceAccount that may read what the
    discovery reads (Services, pods) in the two namespaces."""
    rules = [
        {"apiGroups": [""], "resources": ["services", "pods"], "verbs": ["get", "list", "watch"]}
    ]
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus"}})
    for where in (kube, operator_system):
        name = f"prometheus-{kube.namespace}"
        where.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [
                    {"kind": "ServiceAccount", "name": "prometheus", "namespace": kube.namespace}
                ],
            },
        )
    token = kube.kubectl("create", "token", "prometheus", "--duration=1h").stdout.strip()
    plane = kube.plane
    return api.Client(api.Credentials(plane.server, plane.pki.ca_cert, token=token), timeout=10)


def service_monitors(
    kube: kubectl.Kube, operator_system: kubectl.Kube, discovery: prometheus_server.Discovery
) -> list[Json]:
    """What the Prometheus Operator makes of the chart's two ServiceMonitors."""
    operator = prometheus_server.ServiceMonitor(
        namespace=operator_system.namespace,
        name="jobqueue-operator",
        service_labels=OPERATOR_LABELS,
        namespaces=[operator_system.namespace],
        # The operator's series name the JobQueue's namespace: kept over its pod's own.
        honor_labels=True,
    )
    workers = prometheus_server.ServiceMonitor(
        namespace=operator_system.namespace,
        name="jobqueue-workers",
        service_labels={
            "app.kubernetes.io/name": "jobqueue-worker",
            "app.kubernetes.io/managed-by": "jobqueue-operator",
        },
        namespaces=[kube.namespace],
        relabelings=[("__meta_kubernetes_service_label_app_kubernetes_io_instance", "jobqueue")],
    )
    return [operator.scrape_config(discovery), workers.scrape_config(discovery)]


# --- the operator as a pod ----------------------------------------------------------------------


@contextlib.contextmanager
def operator_pod(kube: kubectl.Kube, system: kubectl.Kube) -> collections.abc.Iterator[Json]:
    """``deploy/operator.yaml`` limited to the test's namespace, and the Service the chart
    puts in front of its metrics; removed at the end."""
    [deployment] = yaml.safe_load_all((rig.DEPLOY / "operator.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    container["env"].append({"name": "JOBQUEUE_OPERATOR_NAMESPACES", "value": kube.namespace})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": OPERATOR_SERVICE, "labels": OPERATOR_LABELS},
        "spec": {
            "selector": OPERATOR_LABELS,
            "ports": [{"name": "metrics", "port": 8080, "targetPort": "metrics"}],
        },
    }
    system.apply(service, deployment)
    selector = "app.kubernetes.io/name=jobqueue-operator"
    try:
        [pod] = system.wait_for(
            lambda: [p for p in system.pods(selector) if kubectl.ready(p)],
            "the operator pod Ready",
            timeout=WAIT,
        )
        yield pod
    finally:
        logs = [system.pod_log(pod) for pod in system.pods(selector)]
        for log in logs:
            print("--- operator pod log (tail) ---\n" + "\n".join(log.splitlines()[-60:]))
        system.kubectl("delete", "deployment", "jobqueue-operator", "--wait=false")
        system.kubectl("delete", "service", OPERATOR_SERVICE, "--wait=false")
        system.wait_for(lambda: not system.pods(selector), "the operator pod gone")
        system.kubectl("delete", "role,rolebinding", f"prometheus-{kube.namespace}", check=False)
    # After the cleanup, and only when the run itself passed (a failure above says more).
    assert not any("forbidden" in log.lower() for log in logs), "the operator was refused"


# --- the workload -------------------------------------------------------------------------------


def finished_long_ago(database_url: str, count: int) -> None:
    """Jobs that finished a day ago, as a queue with history has: the retention purge
    deletes them (the pruned-jobs counter). Inserted finished, so no worker runs them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (type, status, payload, attempts, created_at, updated_at)"
            " SELECT 'op.work', 'done', '{}', 1, now() - interval '1 day',"
            " now() - interval '1 day' FROM generate_series(1, %s)",
            (count,),
        )


def vacuumed(database_url: str) -> None:
    """A vacuum of jobs, as autovacuum would run in a longer life: the run is too short for
    one, and a table never vacuumed has no last-vacuum age to show."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM jobs")


def pending(database_url: str) -> int:
    """Jobs not finished yet (ready, delayed or running)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status NOT IN ('done', 'failed')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def held_job(database_url: str, release: pathlib.Path) -> jobqueue.Job:
    with jobqueue.SyncQueue(database_url) as queue:
        return queue.enqueue_job("op.work", {"release": str(release)})


def holder(kube: kubectl.Kube, database_url: str, job: jobqueue.Job) -> Json:
    """The Ready worker pod running ``job``, once one is."""

    def found() -> Json | None:
        state = rig.jobs_by_status(database_url, job.id).get(job.id)
        if state is None or state.status != "running":
            return None
        pods = {p["metadata"]["name"]: p for p in rig.live_pods(kube, NAME)}
        pod = pods.get(state.locked_by or "")
        return pod if pod is not None and kubectl.ready(pod) else None

    return typing.cast(Json, kube.wait_for(found, f"job {job.id} running", timeout=WAIT))


@dataclasses.dataclass
class Scope:
    """The run's labels, for selectors and the dashboards' variables."""

    namespace: str

    def selector(self, metric: str, **labels: str) -> str:
        matchers = {"namespace": self.namespace, "jobqueue": NAME, **labels}
        inner = ", ".join(f'{key}="{value}"' for key, value in matchers.items())
        return f"{metric}{{{inner}}}"

    def variables(self) -> dict[str, str]:
        return {"namespace": self.namespace, "jobqueue": NAME, "queue": QUEUE}


# --- checking queries -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Window:
    start: float
    end: float

    def intervals(self) -> dict[str, str]:
        return {
            "$__rate_interval": "10s",
            "$__interval": f"{STEP:g}s",
            "$__range": f"{int(self.end - self.start)}s",
        }


def returns_series(prometheus: prometheus_server.Prometheus, query: str, window: Window) -> bool:
    """The query parses (Prometheus answers without an error) and returns at least one
    series with a value over the run."""
    prometheus.query(query, at=window.end)
    found = prometheus.query_range(query, window.start, window.end, STEP)
    return any(prometheus_server.finite_values(series) for series in found)


def empty_queries(
    prometheus: prometheus_server.Prometheus, queries: collections.abc.Iterable[str], window: Window
) -> list[str]:
    return [query for query in queries if not returns_series(prometheus, query, window)]


def panel_results(
    prometheus: prometheus_server.Prometheus, scope: Scope, window: Window, path: pathlib.Path
) -> Json:
    """A dashboard's panels with their queries' range results, as drawn by render.py."""
    board = deploy_files.load_dashboard(path)
    panels = []
    for panel in deploy_files.panels(board):
        targets = []
        for target in panel["targets"]:
            query = deploy_files.promql(target["expr"], scope.variables(), window.intervals())
            series = prometheus.query_range(query, window.start, window.end, STEP)
            targets.append(
                {"expr": query, "legendFormat": target.get("legendFormat", ""), "series": series}
            )
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        panels.append(
            {"title": panel["title"], "gridPos": panel["gridPos"], "unit": unit, "targets": targets}
        )
    return {
        "title": board["title"],
        "uid": board["uid"],
        "start": window.start,
        "end": window.end,
        "step": STEP,
        "panels": panels,
    }


# --- the test -----------------------------------------------------------------------------------


def test_dashboards_and_alerts_return_series_from_a_real_prometheus(
    kube: kubectl.Kube,
    operator_system: kubectl.Kube,
    database_url: str,
    server_url: str,
    tmp_path: pathlib.Path,
    measure: Measure,
) -> None:
    began = time.monotonic()
    scope = Scope(kube.namespace)
    rig.runs_table(database_url)
    rig.database_secret(kube, database_url)
    finished_long_ago(database_url, 3)
    vacuumed(database_url)
    discovery = prometheus_server.Discovery(prometheus_client(kube, operator_system))
    scrape = service_monitors(kube, operator_system, discovery)
    with (
        discovery,
        prometheus_server.running(tmp_path, scrape, [deploy_files.RULES]) as prometheus,
        operator_pod(kube, operator_system),
    ):
        start = time.time()
        manifest = rig.jobqueue_manifest(
            NAME,
            scaling={
                "minReplicas": 1,
                "maxReplicas": 3,
                "targetJobsPerReplica": 4,
                "pollIntervalSeconds": 1,
                "scaleDownDelaySeconds": 2,
            },
            staleJobTimeoutSeconds=OPERATOR_STALE,
            retention={"doneSeconds": 60},
            env={
                "JOBQUEUE_STALE_THRESHOLD": "3",
                "JOBQUEUE_HEARTBEAT_INTERVAL": "0.5",
                "JOBQUEUE_RESCUE_INTERVAL": "0.5",
            },
        )
        manifest["spec"]["worker"]["jobTypes"] = ["op.work", "op.flaky"]
        kube.apply(manifest)

        def wait(query: str, what: str) -> list[Json]:
            return prometheus.wait_for_series(query, what, timeout=WAIT)

        def counted(counter: str, what: str, **labels: str) -> None:
            """Waits for a counter above zero (the counters exist at zero from the start)."""
            wait(scope.selector(counter, **labels) + " > 0", what)

        # Both scrape jobs found their targets, labelled as the ServiceMonitors label them.
        wait(scope.selector("jobqueue_operator_current_replicas"), "the operator scraped")
        wait(scope.selector("jobqueue_worker_concurrency", queue=QUEUE), "a worker scraped")
        counted("jobqueue_operator_pruned_jobs_total", "the history purged")

        # A burst: plain jobs, some due later, some failing for good, some retried once.
        due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=8)
        release = tmp_path / "release-killed"
        with jobqueue.SyncQueue(database_url) as queue:
            queue.enqueue_jobs(
                [
                    # A second each: more than the workers start at once (the backlog ages).
                    *(jobqueue.NewJob("op.work", {"pause": 1.0}) for _ in range(24)),
                    *(jobqueue.NewJob("op.work", {"pause": 0.2}, run_at=due) for _ in range(6)),
                    *(
                        jobqueue.NewJob("op.flaky", {"pause": 0.1}, max_attempts=1)
                        for _ in range(3)
                    ),
                    *(jobqueue.NewJob("op.flaky", {"pause": 0.1, "failures": 1}) for _ in range(3)),
                ]
            )
        killed_job = held_job(database_url, release)
        wait(scope.selector("jobqueue_operator_current_replicas") + " >= 3", "scaled to the cap")
        finished_long_ago(database_url, 3)  # a second purge, now that the counter is there

        # kill -9 of a worker holding a job, while others live: their rescue hands it back.
        pod = holder(kube, database_url, killed_job)
        os.kill(kubectl.pid(pod), signal.SIGKILL)
        killed = time.monotonic()
        release.touch()
        counted("jobqueue_worker_rescued_jobs_total", "a worker's rescue")
        measure("kill -9 -> the workers' rescue counter in Prometheus", time.monotonic() - killed)

        # Drained: the workers scale down to the minimum.
        kube.wait_for(lambda: pending(database_url) == 0, "the burst done", timeout=WAIT)
        counted("jobqueue_operator_scale_events_total", "scaled down", direction="down")
        wait(scope.selector("jobqueue_operator_current_replicas") + " == 1", "one worker left")
        kube.wait_for(lambda: len(rig.worker_pods(kube, NAME)) == 1, "one worker pod")

        # A frozen worker, the only one: no heartbeats, no rescue loop; the operator's turn.
        # Thawed at once: frozen much longer, the kubelet's liveness probe restarts it.
        release = tmp_path / "release-frozen"
        frozen_job = held_job(database_url, release)
        pod = holder(kube, database_url, frozen_job)
        os.kill(kubectl.pid(pod), signal.SIGSTOP)
        try:
            counted("jobqueue_operator_rescued_jobs_total", "the operator's rescue")
        finally:
            os.kill(kubectl.pid(pod), signal.SIGCONT)
        # Thawed, it either finds its job gone at its next heartbeat and stops it (counted
        # lost; released if its lease check comes first), then runs it again; or its claim
        # comes first and takes the job back, and the run it has going carries on under the
        # new claim. Either way the job never runs twice at once.
        stopped = (
            f'jobqueue_worker_jobs_total{{namespace="{scope.namespace}", jobqueue="{NAME}",'
            ' outcome=~"lost|released"} > 0'
        )

        def settled() -> bool:
            if prometheus.query(stopped):
                return True
            state = rig.jobs_by_status(database_url, frozen_job.id)[frozen_job.id]
            return (
                state.status == "running"
                and state.locked_by == pod["metadata"]["name"]
                and state.attempts == frozen_job.attempts + 2
            )

        kube.wait_for(settled, "the thawed worker's job stopped or claimed back", timeout=WAIT)
        release.touch()
        kube.wait_for(lambda: pending(database_url) == 0, "the frozen job done", timeout=WAIT)
        # The one alert without a `for`: the rules Prometheus loaded fire on this run's data.
        firing = scope.selector("ALERTS", alertname="JobQueueStaleJobsRescued", alertstate="firing")
        wait(firing, "JobQueueStaleJobsRescued firing")

        # The database away: workers and operator count their errors.
        with rig.database_blocked(server_url, database_url):
            outage = time.time()
            counted("jobqueue_worker_database_errors_total", "workers' errors")
            counted("jobqueue_operator_reconcile_errors_total", "reconcile errors")
        wait(
            f"timestamp({scope.selector('jobqueue_operator_current_replicas')}) > {outage + 5}",
            "samples after the outage",
        )
        end = time.time()
        assert not discovery.errors, discovery.errors
        measure("monitoring e2e: the workload, Prometheus scraping it", time.monotonic() - began)

        window = Window(start, end)
        check_rules_loaded(prometheus)
        check_dashboards(prometheus, scope, window)
        check_alerts(prometheus, window)
        check_a_renamed_metric_is_caught(prometheus, scope, window)
        folder = os.environ.get(DATA_FOLDER_ENV)
        if folder:
            save_panel_results(prometheus, scope, window, pathlib.Path(folder))
    measure("monitoring e2e: the whole test", time.monotonic() - began)


def check_rules_loaded(prometheus: prometheus_server.Prometheus) -> None:
    wanted = {rule["alert"] for rule in deploy_files.alert_rules()}

    def evaluated() -> list[Json] | None:
        rules = [
            rule
            for group in prometheus.api("rules", type="alert")["groups"]
            for rule in group["rules"]
        ]
        return rules if all(rule["health"] != "unknown" for rule in rules) else None

    rules = typing.cast(
        list[Json],
        waiting.eventually_sync(
            evaluated, timeout=WAIT, interval=0.5, what="the alert rules evaluated"
        ),
    )
    assert {rule["name"] for rule in rules} == wanted
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not unhealthy, unhealthy


def check_dashboards(
    prometheus: prometheus_server.Prometheus, scope: Scope, window: Window
) -> None:
    empty: list[str] = []
    count = 0
    for path in deploy_files.dashboard_files():
        board = deploy_files.load_dashboard(path)
        for panel in deploy_files.panels(board):
            for target in panel["targets"]:
                query = deploy_files.promql(target["expr"], scope.variables(), window.intervals())
                count += 1
                if not returns_series(prometheus, query, window):
                    empty.append(f"{path.name}: {panel['title']}: {query}")
        for selector in deploy_files.variable_queries(board):
            query = deploy_files.promql(selector, scope.variables(), window.intervals())
            count += 1
            if not returns_series(prometheus, query, window):
                empty.append(f"{path.name}: a variable: {query}")
    assert count > 20
    assert not empty, "queries without series:\n" + "\n".join(empty)


def check_alerts(prometheus: prometheus_server.Prometheus, window: Window) -> None:
    empty: list[str] = []
    for rule in deploy_files.alert_rules():
        prometheus.query(rule["expr"], at=window.end)  # parses as it is
        parts = deploy_files.alert_parts(rule["expr"])
        whole = deploy_files.without_thresholds(rule["expr"])
        empty += [
            f"{rule['alert']}: {query}"
            for query in empty_queries(prometheus, [*parts, whole], window)
        ]
    assert not empty, "alert parts without series:\n" + "\n".join(empty)


def check_a_renamed_metric_is_caught(
    prometheus: prometheus_server.Prometheus, scope: Scope, window: Window
) -> None:
    # A real panel query and a copy whose metric is renamed, as a refactor might leave it.
    [board] = [
        deploy_files.load_dashboard(path)
        for path in deploy_files.dashboard_files()
        if path.name == "jobqueue-queues.json"
    ]
    [panel] = [p for p in deploy_files.panels(board) if p["title"] == "Failures and retries"]
    query = deploy_files.promql(panel["targets"][0]["expr"], scope.variables(), window.intervals())
    renamed = query.replace("jobqueue_worker_jobs_total", "jobqueue_worker_job_total")
    assert renamed != query
    assert empty_queries(prometheus, [query, renamed], window) == [renamed]
    # An alert part likewise.
    [rule] = [r for r in deploy_files.alert_rules() if r["alert"] == "JobQueueHighFailureRatio"]
    renamed = rule["expr"].replace("jobqueue_worker_jobs_total", "jobqueue_worker_job_total")
    broken = empty_queries(prometheus, deploy_files.alert_parts(renamed), window)
    assert len(broken) == 2, broken


def save_panel_results(
    prometheus: prometheus_server.Prometheus, scope: Scope, window: Window, folder: pathlib.Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in deploy_files.dashboard_files():
        results = panel_results(prometheus, scope, window, path)
        (folder / path.name).write_text(json.dumps(results, indent=1) + "\n")
