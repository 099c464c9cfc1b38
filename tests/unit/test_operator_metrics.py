"""The operator's metrics: one series set per JobQueue, gone when the JobQueue is."""

from __future__ import annotations

import prometheus_client

import jobqueue
from jobqueue import metrics as names
from jobqueue_operator import metrics, monitor


def depth(ready: int, running: int) -> monitor.Depth:
    row = jobqueue.QueueDepth("default", "a", ready, 0, 0, running, 1, 2, 4.5)
    return monitor.Depth.of([row])


def test_per_jobqueue_series_and_forgetting_them() -> None:
    registry = prometheus_client.CollectorRegistry()
    exported = metrics.OperatorMetrics(registry)
    exported.observe("ns1", "books", depth(7, 3), desired=2, current=1, maximum=5)
    exported.observe("ns2", "books", depth(1, 0), desired=1, current=1)
    exported.scaled("ns1", "books", "up")
    exported.rescued("ns1", "books", 2)
    exported.reconcile("ns1", "books", 0.25, error=True)
    value = registry.get_sample_value
    source = {"namespace": "ns1", "jobqueue": "books"}
    assert (
        value(names.QUEUE_JOBS, {**source, "queue": "default", "type": "a", "state": "ready"}) == 7
    )
    assert value(names.QUEUE_OLDEST_READY_AGE, {**source, "queue": "default", "type": "a"}) == 4.5
    assert value(names.OPERATOR_DESIRED_REPLICAS, source) == 2
    assert value(names.OPERATOR_MAX_REPLICAS, source) == 5
    assert value(names.OPERATOR_SCALE_EVENTS + "_total", {**source, "direction": "up"}) == 1
    assert value(names.OPERATOR_RESCUED_JOBS + "_total", source) == 2
    assert value(names.OPERATOR_RECONCILE_ERRORS + "_total", source) == 1
    exported.forget("ns1", "books")
    assert value(names.OPERATOR_DESIRED_REPLICAS, source) is None
    assert value(names.OPERATOR_MAX_REPLICAS, source) is None
    assert (
        value(names.QUEUE_JOBS, {**source, "queue": "default", "type": "a", "state": "ready"})
        is None
    )
    other = {"namespace": "ns2", "jobqueue": "books"}
    assert value(names.OPERATOR_DESIRED_REPLICAS, other) == 1
    exported.forget("ns3", "never-seen")  # nothing to remove, nothing raised


def test_a_jobqueues_counters_start_at_zero_before_its_first_reconcile() -> None:
    # A counter born at 1 hides its first step from increase(): the first rescue would fire
    # no alert. So they exist, at zero, before anything is counted.
    registry = prometheus_client.CollectorRegistry()
    exported = metrics.OperatorMetrics(registry)
    source = {"namespace": "ns1", "jobqueue": "books"}
    assert registry.get_sample_value(names.OPERATOR_RESCUED_JOBS + "_total", source) is None
    exported.track("ns1", "books")
    for counter in (
        names.OPERATOR_RESCUED_JOBS,
        names.OPERATOR_PRUNED_JOBS,
        names.OPERATOR_RECONCILE_ERRORS,
    ):
        assert registry.get_sample_value(counter + "_total", source) == 0, counter
    for direction in ("up", "down"):
        labels = {**source, "direction": direction}
        assert registry.get_sample_value(names.OPERATOR_SCALE_EVENTS + "_total", labels) == 0


def vacuum(dead: int, last_vacuum_age: float | None) -> jobqueue.VacuumHealth:
    jobs = jobqueue.TableVacuum("jobs", 100, dead, 8192, 16384, last_vacuum_age, 1, 4)
    return jobqueue.VacuumHealth((jobs,), 12, 30.5, sees_all_sessions=True)


def test_vacuum_health_series_per_jobqueue_and_table_gone_with_the_jobqueue() -> None:
    registry = prometheus_client.CollectorRegistry()
    exported = metrics.OperatorMetrics(registry)
    value = registry.get_sample_value
    source = {"namespace": "ns1", "jobqueue": "books"}
    table = {**source, "table": "jobs"}
    assert value(names.DATABASE_XMIN_HORIZON_AGE, source) is None  # nothing read yet
    exported.vacuum_health("ns1", "books", vacuum(dead=7, last_vacuum_age=None))
    exported.vacuum_health("ns2", "books", vacuum(dead=9, last_vacuum_age=60.0))
    assert value(names.DATABASE_TABLE_DEAD_TUPLES, table) == 7
    assert value(names.DATABASE_TABLE_LIVE_TUPLES, table) == 100
    assert value(names.DATABASE_TABLE_SIZE, table) == 8192
    assert value(names.DATABASE_TABLE_INDEX_SIZE, table) == 16384
    assert value(names.DATABASE_TABLE_VACUUMS + "_total", {**table, "kind": "manual"}) == 1
    assert value(names.DATABASE_TABLE_VACUUMS + "_total", {**table, "kind": "auto"}) == 4
    assert value(names.DATABASE_XMIN_HORIZON_AGE, source) == 12
    assert value(names.DATABASE_OLDEST_TRANSACTION_AGE, source) == 30.5
    # Never vacuumed: no age rather than a made-up one.
    assert value(names.DATABASE_TABLE_LAST_VACUUM_AGE, table) is None
    other = {"namespace": "ns2", "jobqueue": "books", "table": "jobs"}
    assert value(names.DATABASE_TABLE_LAST_VACUUM_AGE, other) == 60
    exported.vacuum_health("ns1", "books", vacuum(dead=3, last_vacuum_age=5.0))  # a new reading
    assert value(names.DATABASE_TABLE_DEAD_TUPLES, table) == 3
    exported.forget("ns1", "books")
    assert value(names.DATABASE_TABLE_DEAD_TUPLES, table) is None
    assert value(names.DATABASE_XMIN_HORIZON_AGE, source) is None
    assert value(names.DATABASE_TABLE_DEAD_TUPLES, other) == 9
