"""Metrics without globals: names in one module, objects made against a registry passed in,
queue depth exported by a collector (issue 9, part 5)."""

from __future__ import annotations

import pathlib
import typing

import fresh_python
import prometheus_client
import prometheus_client.registry

import jobqueue
from jobqueue import maintenance, metrics

README = pathlib.Path(__file__).parents[2] / "README.md"


def test_nothing_is_registered_at_import() -> None:
    probe = (
        "import prometheus_client, jobqueue, jobqueue.worker, jobqueue.cli;"
        " print(sorted(n for n in prometheus_client.REGISTRY._names_to_collectors"
        " if n.startswith('jobqueue')))"
    )
    assert fresh_python.printed_by(probe) == "[]"


def test_workers_report_to_the_registry_they_are_given() -> None:
    mine = prometheus_client.registry.CollectorRegistry()
    first = metrics.WorkerMetrics("q1", mine)
    second = metrics.WorkerMetrics("q2", mine)  # the same registry: families shared
    first.job_finished("t", "done")
    second.job_finished("t", "done")
    second.job_finished("t", "done")
    assert (
        mine.get_sample_value(
            "jobqueue_worker_jobs_total", {"queue": "q2", "type": "t", "outcome": "done"}
        )
        == 2
    )
    other = prometheus_client.registry.CollectorRegistry()
    metrics.WorkerMetrics("q1", other).job_finished("t", "done")
    assert (
        other.get_sample_value(
            "jobqueue_worker_jobs_total", {"queue": "q1", "type": "t", "outcome": "done"}
        )
        == 1
    )
    assert (
        mine.get_sample_value(
            "jobqueue_worker_jobs_total", {"queue": "q1", "type": "t", "outcome": "done"}
        )
        == 1
    )


def test_per_job_histograms_expose_cumulative_buckets_a_count_and_a_sum() -> None:
    mine = prometheus_client.registry.CollectorRegistry()
    worker = metrics.WorkerMetrics("q", mine)
    for seconds in (0.001, 0.002, 0.5, 7200.0):  # on a bound, inside, on one, above all
        worker.job_duration("t", seconds)
    worker.queue_wait("t", 0.0)

    def sample(name: str, **labels: str) -> float | None:
        return mine.get_sample_value(name, {"queue": "q", "type": "t", **labels})

    duration = metrics.WORKER_JOB_DURATION
    assert sample(f"{duration}_bucket", le="0.001") == 1  # a bucket holds its bound
    assert sample(f"{duration}_bucket", le="0.005") == 2
    assert sample(f"{duration}_bucket", le="0.5") == 3
    assert sample(f"{duration}_bucket", le="3600.0") == 3
    assert sample(f"{duration}_bucket", le="+Inf") == 4
    assert sample(f"{duration}_count") == 4
    assert sample(f"{duration}_sum") == 0.001 + 0.002 + 0.5 + 7200.0
    assert sample(f"{metrics.WORKER_JOB_QUEUE_WAIT}_bucket", le="0.001") == 1
    text = prometheus_client.generate_latest(mine).decode()
    assert f"# TYPE {duration} histogram" in text
    assert f"# TYPE {metrics.WORKER_JOBS}_total counter" in text


async def test_queue_depth_collector_exports_the_maintenance_query(
    queue: jobqueue.Queue,
) -> None:
    await queue.enqueue_jobs(jobqueue.NewJob("a") for _ in range(3))
    await queue.claim_jobs("w")
    registry = prometheus_client.registry.CollectorRegistry()
    collector = metrics.QueueDepthCollector()
    registry.register(collector)
    assert "jobqueue_queue_jobs{" not in prometheus_client.generate_latest(registry).decode()
    collector.update(await maintenance.queue_depth(queue))

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("jobqueue_queue_jobs", queue="default", type="a", state="ready") == 2
    assert sample("jobqueue_queue_jobs", queue="default", type="a", state="running") == 1
    age = sample("jobqueue_queue_oldest_ready_age_seconds", queue="default", type="a")
    assert age is not None
    assert age >= 0


async def test_vacuum_health_collector_exports_a_reading(queue: jobqueue.Queue) -> None:
    registry = prometheus_client.registry.CollectorRegistry()
    collector = metrics.VacuumHealthCollector()
    registry.register(collector)
    text = prometheus_client.generate_latest(registry).decode()
    assert f"# TYPE {metrics.DATABASE_TABLE_DEAD_TUPLES} gauge" in text  # families, no series
    assert f"{metrics.DATABASE_TABLE_DEAD_TUPLES}{{" not in text
    collector.update(await maintenance.vacuum_health(queue))
    text = prometheus_client.generate_latest(registry).decode()
    assert f"# TYPE {metrics.DATABASE_TABLE_VACUUMS}_total counter" in text
    for table in maintenance.CHURNING_TABLES:
        labels = {"table": table}
        assert registry.get_sample_value(metrics.DATABASE_TABLE_DEAD_TUPLES, labels) == 0
        assert registry.get_sample_value(metrics.DATABASE_TABLE_INDEX_SIZE, labels) is not None
        for kind in ("manual", "auto"):
            counted = {**labels, "kind": kind}
            vacuums = metrics.DATABASE_TABLE_VACUUMS + "_total"
            assert registry.get_sample_value(vacuums, counted) == 0
    assert registry.get_sample_value(metrics.DATABASE_XMIN_HORIZON_AGE, {}) is not None
    collector.forget()
    assert registry.get_sample_value(metrics.DATABASE_XMIN_HORIZON_AGE, {}) is None


def test_every_metric_name_is_documented() -> None:
    text = README.read_text()
    names: list[typing.Any] = [
        value
        for key, value in vars(metrics).items()
        if key.isupper() and isinstance(value, str) and value.startswith("jobqueue_")
    ]
    assert len(names) >= 10
    assert [name for name in names if name not in text] == []


def test_a_workers_counters_start_at_zero_for_its_job_types() -> None:
    # A counter born at 1 hides its first step from rate() and increase(): a new worker's
    # first failure or rescue would move no panel and fire no alert.
    registry = prometheus_client.registry.CollectorRegistry()
    metrics.WorkerMetrics("q", registry).prepare(["a", "b"])
    for job_type in ("a", "b"):
        for outcome in metrics.JOB_OUTCOMES:
            labels = {"queue": "q", "type": job_type, "outcome": outcome}
            assert registry.get_sample_value("jobqueue_worker_jobs_total", labels) == 0
        for status in metrics.RESCUED_STATUSES:
            labels = {"queue": "q", "type": job_type, "status": status}
            assert registry.get_sample_value("jobqueue_worker_rescued_jobs_total", labels) == 0
