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
WORKER_INFO: typing.Final = prometheus_client.Info(
    "jobqueue_worker", "The worker's identity and settings."
)
