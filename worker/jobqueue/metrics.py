"""Prometheus metrics of a worker process (K4), served by ``probes`` on ``/metrics``.

Queue-level gauges (how many jobs are pending, ...) are not here: the operator exports them
once per queue, rather than every worker counting the same table.
"""

from __future__ import annotations

import typing

import prometheus_client

_DURATION_BUCKETS: typing.Final = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
)
_BATCH_BUCKETS: typing.Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

JOBS: typing.Final = prometheus_client.Counter(
    "jobqueue_worker_jobs",
    "Jobs this worker finished, by outcome: done, retried (failed, will run again), failed"
    " (for good), lost (its lock went stale and the job was handed to another worker),"
    " released (handed back at shutdown).",
    ["queue", "type", "outcome"],
)
JOB_DURATION: typing.Final = prometheus_client.Histogram(
    "jobqueue_worker_job_duration_seconds",
    "Time a handler took for one job, whatever the outcome.",
    ["queue", "type"],
    buckets=_DURATION_BUCKETS,
)
QUEUE_WAIT: typing.Final = prometheus_client.Histogram(
    "jobqueue_worker_job_queue_wait_seconds",
    "Time from a job being due (run_at) to a worker starting it.",
    ["queue", "type"],
    buckets=_DURATION_BUCKETS,
)
ACTIVE_JOBS: typing.Final = prometheus_client.Gauge(
    "jobqueue_worker_active_jobs", "Jobs this worker is running now.", ["queue"]
)
CONCURRENCY: typing.Final = prometheus_client.Gauge(
    "jobqueue_worker_concurrency", "How many jobs this worker runs at once at most.", ["queue"]
)
CLAIM_BATCH: typing.Final = prometheus_client.Histogram(
    "jobqueue_worker_claim_batch_size",
    "Jobs claimed per claim statement (empty claims included).",
    ["queue"],
    buckets=(0, *_BATCH_BUCKETS),
)
DATABASE_ERRORS: typing.Final = prometheus_client.Counter(
    "jobqueue_worker_database_errors",
    "Database operations that failed (and were retried), by operation.",
    ["queue", "operation"],
)
RESCUED: typing.Final = prometheus_client.Counter(
    "jobqueue_worker_rescued_jobs",
    "Stale jobs (of dead workers) this worker's rescue loop handed back, by what they became:"
    " pending (to run again) or failed (out of attempts).",
    ["queue", "type", "status"],
)
WORKER_INFO: typing.Final = prometheus_client.Info(
    "jobqueue_worker", "The worker's identity and settings."
)


class WorkerMetrics:
    """One worker's handles on the metrics above, its label values bound once: looking up
    a labelled child costs more than the update itself, on a path run for every job."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.active_jobs = ACTIVE_JOBS.labels(queue=queue)
        self.concurrency = CONCURRENCY.labels(queue=queue)
        self.claim_batch = CLAIM_BATCH.labels(queue=queue)
        self._jobs: dict[tuple[str, str], prometheus_client.Counter] = {}
        self._durations: dict[str, prometheus_client.Histogram] = {}
        self._waits: dict[str, prometheus_client.Histogram] = {}

    def job_finished(self, job_type: str, outcome: str) -> None:
        key = (job_type, outcome)
        child = self._jobs.get(key)
        if child is None:
            child = self._jobs[key] = JOBS.labels(queue=self.queue, type=job_type, outcome=outcome)
        child.inc()

    def job_duration(self, job_type: str, seconds: float) -> None:
        child = self._durations.get(job_type)
        if child is None:
            child = self._durations[job_type] = JOB_DURATION.labels(queue=self.queue, type=job_type)
        child.observe(seconds)

    def queue_wait(self, job_type: str, seconds: float) -> None:
        child = self._waits.get(job_type)
        if child is None:
            child = self._waits[job_type] = QUEUE_WAIT.labels(queue=self.queue, type=job_type)
        child.observe(seconds)

    def job_rescued(self, job_type: str, status: str) -> None:
        RESCUED.labels(queue=self.queue, type=job_type, status=status).inc()

    def database_error(self, operation: str) -> None:
        DATABASE_ERRORS.labels(queue=self.queue, operation=operation).inc()
