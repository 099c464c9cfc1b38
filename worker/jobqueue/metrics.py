"""Prometheus metrics (K4): every name once, here, and the metric objects made against a
registry the caller passes in (the process's default one unless told otherwise), so a test
or an embedding application gets metrics of its own and nothing is registered at import.

Worker metrics are served by ``probes`` on ``/metrics``. Queue-level gauges (how many jobs
are ready, how old the oldest is) come from ``QueueDepthCollector``, fed with the
maintenance query's rows by whoever exports them once per queue (the operator), rather than
every worker counting the same table; the database's vacuum health likewise, from
``VacuumHealthCollector``. Dashboards and alerts are checked against the names below.
"""

from __future__ import annotations

import bisect
import collections.abc
import math
import typing
import weakref

import prometheus_client
import prometheus_client.core
import prometheus_client.registry

from jobqueue import maintenance

# --- names: what dashboards and alerts refer to ----------------------------------------------

WORKER_JOBS: typing.Final = "jobqueue_worker_jobs"  # a counter: exposed as ..._total
WORKER_JOB_DURATION: typing.Final = "jobqueue_worker_job_duration_seconds"
WORKER_JOB_QUEUE_WAIT: typing.Final = "jobqueue_worker_job_queue_wait_seconds"
WORKER_ACTIVE_JOBS: typing.Final = "jobqueue_worker_active_jobs"
WORKER_CONCURRENCY: typing.Final = "jobqueue_worker_concurrency"
WORKER_CLAIM_BATCH: typing.Final = "jobqueue_worker_claim_batch_size"
WORKER_DATABASE_ERRORS: typing.Final = "jobqueue_worker_database_errors"  # ..._total
WORKER_RESCUED_JOBS: typing.Final = "jobqueue_worker_rescued_jobs"  # ..._total
WORKER_INFO: typing.Final = "jobqueue_worker"  # an info metric: ..._info
QUEUE_JOBS: typing.Final = "jobqueue_queue_jobs"
QUEUE_OLDEST_READY_AGE: typing.Final = "jobqueue_queue_oldest_ready_age_seconds"
# The operator's, once per JobQueue resource (labels namespace and jobqueue).
OPERATOR_DESIRED_REPLICAS: typing.Final = "jobqueue_operator_desired_replicas"
OPERATOR_CURRENT_REPLICAS: typing.Final = "jobqueue_operator_current_replicas"
OPERATOR_MAX_REPLICAS: typing.Final = "jobqueue_operator_max_replicas"
OPERATOR_SCALE_EVENTS: typing.Final = "jobqueue_operator_scale_events"  # ..._total
OPERATOR_RESCUED_JOBS: typing.Final = "jobqueue_operator_rescued_jobs"  # ..._total
OPERATOR_PRUNED_JOBS: typing.Final = "jobqueue_operator_pruned_jobs"  # ..._total
OPERATOR_RECONCILE_DURATION: typing.Final = "jobqueue_operator_reconcile_duration_seconds"
OPERATOR_RECONCILE_ERRORS: typing.Final = "jobqueue_operator_reconcile_errors"  # ..._total
# Vacuum health of a queue's database (``VacuumHealthCollector``), per table where a table
# label says so; the operator's carry namespace and jobqueue.
DATABASE_TABLE_LIVE_TUPLES: typing.Final = "jobqueue_database_table_live_tuples"
DATABASE_TABLE_DEAD_TUPLES: typing.Final = "jobqueue_database_table_dead_tuples"
DATABASE_TABLE_SIZE: typing.Final = "jobqueue_database_table_size_bytes"
DATABASE_TABLE_INDEX_SIZE: typing.Final = "jobqueue_database_table_index_size_bytes"
DATABASE_TABLE_LAST_VACUUM_AGE: typing.Final = "jobqueue_database_table_last_vacuum_age_seconds"
DATABASE_TABLE_VACUUMS: typing.Final = "jobqueue_database_table_vacuums"  # ..._total
DATABASE_XMIN_HORIZON_AGE: typing.Final = "jobqueue_database_xmin_horizon_age_transactions"
DATABASE_OLDEST_TRANSACTION_AGE: typing.Final = "jobqueue_database_oldest_transaction_age_seconds"

# The label values a worker's counters take, each series made at zero when the worker starts:
# rate() and increase() see a counter's first step only if a sample came before it, so a
# series born at 1 hides the first failure or rescue from the dashboards and the alerts.
JOB_OUTCOMES: typing.Final = (
    "done",
    "retried",
    "failed",
    "lost",
    "released",
    "cancelled",
    "snoozed",
)
RESCUED_STATUSES: typing.Final = ("pending", "failed")

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
_BATCH_BUCKETS: typing.Final = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

Registry: typing.TypeAlias = prometheus_client.registry.CollectorRegistry


class _WorkerFamilies:
    """The worker metrics of one registry: made once per registry, shared by every worker
    that reports to it (a registry refuses the same name twice)."""

    def __init__(self, registry: Registry) -> None:
        # Counted for every job: families of our own without a lock per update (below).
        self.jobs = _LoopCounter(
            WORKER_JOBS,
            "Jobs this worker finished, by outcome: done, retried (failed, will run again),"
            " failed (for good), lost (its lock went stale and the job was handed to another"
            " worker, or it was deleted), released (handed back at shutdown), cancelled (on"
            " request while it ran), snoozed (asked to run again later).",
            ("queue", "type", "outcome"),
        )
        self.duration = _LoopHistogram(
            WORKER_JOB_DURATION,
            "Time a handler took for one job, whatever the outcome.",
            ("queue", "type"),
            _DURATION_BUCKETS,
        )
        self.queue_wait = _LoopHistogram(
            WORKER_JOB_QUEUE_WAIT,
            "Time from a job being due (run_at) to a worker starting it.",
            ("queue", "type"),
            _DURATION_BUCKETS,
        )
        for family in (self.jobs, self.duration, self.queue_wait):
            registry.register(family)
        self.active = prometheus_client.Gauge(
            WORKER_ACTIVE_JOBS, "Jobs this worker is running now.", ["queue"], registry=registry
        )
        self.concurrency = prometheus_client.Gauge(
            WORKER_CONCURRENCY,
            "How many jobs this worker runs at once at most.",
            ["queue"],
            registry=registry,
        )
        self.claim_batch = prometheus_client.Histogram(
            WORKER_CLAIM_BATCH,
            "Jobs claimed per claim statement (empty claims included).",
            ["queue"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.database_errors = prometheus_client.Counter(
            WORKER_DATABASE_ERRORS,
            "Database operations that failed (and were retried), by operation.",
            ["queue", "operation"],
            registry=registry,
        )
        self.rescued = prometheus_client.Counter(
            WORKER_RESCUED_JOBS,
            "Stale jobs (of dead workers) this worker's rescue loop handed back, by what they"
            " became: pending (to run again) or failed (out of attempts).",
            ["queue", "type", "status"],
            registry=registry,
        )
        self.info = prometheus_client.Info(
            WORKER_INFO, "The worker's identity and settings.", registry=registry
        )


_families: weakref.WeakKeyDictionary[Registry, _WorkerFamilies] = weakref.WeakKeyDictionary()


def _worker_families(registry: Registry) -> _WorkerFamilies:
    found = _families.get(registry)
    if found is None:
        found = _families[registry] = _WorkerFamilies(registry)
    return found


class WorkerMetrics:
    """One worker's handles on its metrics, label values bound once: looking up a labelled
    child costs more than the update itself, on a path run for every job."""

    def __init__(self, queue: str, registry: Registry | None = None) -> None:
        self.queue = queue
        self._families = _worker_families(registry or prometheus_client.REGISTRY)
        self.active_jobs = self._families.active.labels(queue=queue)
        self.concurrency = self._families.concurrency.labels(queue=queue)
        self.claim_batch = self._families.claim_batch.labels(queue=queue)
        self._jobs: dict[tuple[str, str], list[float]] = {}
        self._durations: dict[str, _Observations] = {}
        self._waits: dict[str, _Observations] = {}

    def prepare(self, job_types: collections.abc.Iterable[str]) -> None:
        """Makes the counters of the types this worker runs, at zero (see ``JOB_OUTCOMES``)."""
        for job_type in job_types:
            for outcome in JOB_OUTCOMES:
                self._jobs_counter(job_type, outcome)
            for status in RESCUED_STATUSES:
                self._families.rescued.labels(self.queue, job_type, status)

    def identify(self, worker_id: str) -> None:
        self._families.info.info({"worker_id": worker_id, "queue": self.queue})

    def job_finished(self, job_type: str, outcome: str) -> None:
        self._jobs_counter(job_type, outcome)[0] += 1

    def _jobs_counter(self, job_type: str, outcome: str) -> list[float]:
        key = (job_type, outcome)
        child = self._jobs.get(key)
        if child is None:
            child = self._jobs[key] = self._families.jobs.child((self.queue, job_type, outcome))
        return child

    def job_duration(self, job_type: str, seconds: float) -> None:
        child = self._durations.get(job_type)
        if child is None:
            child = self._families.duration.child((self.queue, job_type))
            self._durations[job_type] = child
        child.observe(seconds)

    def queue_wait(self, job_type: str, seconds: float) -> None:
        child = self._waits.get(job_type)
        if child is None:
            child = self._families.queue_wait.child((self.queue, job_type))
            self._waits[job_type] = child
        child.observe(seconds)

    def job_rescued(self, job_type: str, status: str) -> None:
        self._families.rescued.labels(self.queue, job_type, status).inc()

    def database_error(self, operation: str) -> None:
        self._families.database_errors.labels(self.queue, operation).inc()


# --- families updated on the event loop alone ------------------------------------------------
# prometheus_client takes a lock for every update: a few microseconds, three times per job
# on the worker's hottest path. The worker updates these from its event loop only, so a plain
# number does; a scrape (from the HTTP server's thread) reads them without a lock, which at
# worst shows a count one update behind its sum.


class _Observations:
    """One labelled histogram: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class _LoopHistogram(prometheus_client.registry.Collector):
    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], bounds: tuple[float, ...]
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.bounds = bounds
        self._children: dict[tuple[str, ...], _Observations] = {}

    def child(self, values: tuple[str, ...]) -> _Observations:
        found = self._children.get(values)
        if found is None:
            found = self._children[values] = _Observations(self.bounds)
        return found

    def collect(self) -> collections.abc.Iterator[prometheus_client.core.Metric]:
        family = prometheus_client.core.HistogramMetricFamily(
            self.name, self.documentation, labels=self.labels
        )
        for values, child in list(self._children.items()):
            counts, running, buckets = list(child.counts), 0, []
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                running += count
                buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
            family.add_metric(list(values), buckets, child.total)
        yield family


class _LoopCounter(prometheus_client.registry.Collector):
    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self._children: dict[tuple[str, ...], list[float]] = {}

    def child(self, values: tuple[str, ...]) -> list[float]:
        """The count of these label values, as a one-element list to add to."""
        found = self._children.get(values)
        if found is None:
            found = self._children[values] = [0.0]
        return found

    def collect(self) -> collections.abc.Iterator[prometheus_client.core.Metric]:
        family = prometheus_client.core.CounterMetricFamily(
            self.name, self.documentation, labels=self.labels
        )
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child[0])
        yield family


_Reading = typing.TypeVar("_Reading")


class _PerSource(prometheus_client.registry.Collector, typing.Generic[_Reading]):
    """A collector of the latest reading of each source (a database, named by the values
    of ``source_labels``), which ``collect`` turns into families."""

    def __init__(self, source_labels: collections.abc.Sequence[str] = ()) -> None:
        self.source_labels = tuple(source_labels)
        self._readings: dict[tuple[str, ...], _Reading] = {}

    def _keep(self, reading: _Reading, source: collections.abc.Sequence[str]) -> None:
        if len(source) != len(self.source_labels):
            raise ValueError(f"source must give {len(self.source_labels)} label values")
        self._readings[tuple(source)] = reading

    def forget(self, source: collections.abc.Sequence[str] = ()) -> None:
        self._readings.pop(tuple(source), None)


class QueueDepthCollector(_PerSource[list[maintenance.QueueDepth]]):
    """Queue-level gauges from the latest ``maintenance.queue_depth`` rows: register it once
    (``registry.register(collector)``) and ``update`` it after each query. Between updates
    a scrape sees the last rows; before the first, nothing.

    One collector can export several databases' queues: give it ``source_labels`` (the
    operator's are namespace and jobqueue), then ``update`` each source with its values
    and ``forget`` a source that is gone."""

    STATES: typing.Final = (
        "ready",
        "delayed",
        "due_soon",
        "running",
        "failed",
        "done",
        "cancelled",
    )

    def update(
        self,
        rows: collections.abc.Iterable[maintenance.QueueDepth],
        source: collections.abc.Sequence[str] = (),
    ) -> None:
        self._keep(list(rows), source)

    def collect(self) -> collections.abc.Iterator[prometheus_client.core.Metric]:
        jobs = prometheus_client.core.GaugeMetricFamily(
            QUEUE_JOBS,
            "Jobs per queue, type and state: ready (due now), delayed, due_soon (delayed,"
            " due within the window), running, failed, done, cancelled.",
            labels=[*self.source_labels, "queue", "type", "state"],
        )
        oldest = prometheus_client.core.GaugeMetricFamily(
            QUEUE_OLDEST_READY_AGE,
            "How long the longest-waiting ready job of a queue and type has been due.",
            labels=[*self.source_labels, "queue", "type"],
        )
        for source, rows in list(self._readings.items()):
            for row in rows:
                for state in self.STATES:
                    jobs.add_metric([*source, row.queue, row.type, state], getattr(row, state))
                if row.oldest_ready_age is not None:
                    oldest.add_metric([*source, row.queue, row.type], row.oldest_ready_age)
        yield jobs
        yield oldest


class VacuumHealthCollector(_PerSource[maintenance.VacuumHealth]):
    """Vacuum health gauges from the latest ``maintenance.vacuum_health`` reading, used like
    ``QueueDepthCollector``: register it once, ``update`` each source (a database, by the
    ``source_labels`` values) after each reading, ``forget`` a source that is gone. The
    vacuum counts are counters: PostgreSQL's own, which start again from zero when its
    statistics are reset (``rate`` and ``increase`` take that for a counter reset)."""

    def update(
        self, health: maintenance.VacuumHealth, source: collections.abc.Sequence[str] = ()
    ) -> None:
        self._keep(health, source)

    def collect(self) -> collections.abc.Iterator[prometheus_client.core.Metric]:
        per_table = [*self.source_labels, "table"]
        gauge = prometheus_client.core.GaugeMetricFamily
        live = gauge(
            DATABASE_TABLE_LIVE_TUPLES,
            "Live rows of a queue table (pg_stat_user_tables.n_live_tup, an estimate).",
            labels=per_table,
        )
        dead = gauge(
            DATABASE_TABLE_DEAD_TUPLES,
            "Dead row versions of a queue table that vacuum has not removed yet"
            " (pg_stat_user_tables.n_dead_tup, an estimate).",
            labels=per_table,
        )
        size = gauge(
            DATABASE_TABLE_SIZE,
            "Size of a queue table without its indexes: heap, TOAST, free space and"
            " visibility maps (pg_table_size).",
            labels=per_table,
        )
        index_size = gauge(
            DATABASE_TABLE_INDEX_SIZE,
            "Size of all the indexes of a queue table (pg_indexes_size).",
            labels=per_table,
        )
        last_vacuum = gauge(
            DATABASE_TABLE_LAST_VACUUM_AGE,
            "Seconds since the last vacuum of a queue table, manual or automatic, as of the"
            " last reading; no series for a table not vacuumed since the statistics were"
            " reset.",
            labels=per_table,
        )
        vacuums = prometheus_client.core.CounterMetricFamily(
            DATABASE_TABLE_VACUUMS,
            "Vacuums of a queue table since the statistics were reset, by kind: manual"
            " (VACUUM) or auto (autovacuum).",
            labels=[*per_table, "kind"],
        )
        horizon = gauge(
            DATABASE_XMIN_HORIZON_AGE,
            "Transactions between the database's xmin horizon (the oldest snapshot or"
            " transaction id of a session, replication slot xmin or prepared transaction;"
            " vacuum keeps every row version deleted after it) and the next transaction"
            " id. Needs no privilege.",
            labels=list(self.source_labels),
        )
        oldest = gauge(
            DATABASE_OLDEST_TRANSACTION_AGE,
            "Seconds since the oldest transaction holding back the database's xmin horizon"
            " began (a session's or a prepared transaction's; 0: none). Other roles'"
            " sessions count only if the reading role is a member of pg_read_all_stats"
            " (e.g. through pg_monitor).",
            labels=list(self.source_labels),
        )
        for source, health in list(self._readings.items()):
            for table in health.tables:
                labels = [*source, table.table]
                live.add_metric(labels, table.live_tuples)
                dead.add_metric(labels, table.dead_tuples)
                size.add_metric(labels, table.table_bytes)
                index_size.add_metric(labels, table.index_bytes)
                if table.last_vacuum_age is not None:
                    last_vacuum.add_metric(labels, table.last_vacuum_age)
                vacuums.add_metric([*labels, "manual"], table.vacuums)
                vacuums.add_metric([*labels, "auto"], table.autovacuums)
            horizon.add_metric(list(source), health.horizon_age)
            oldest.add_metric(list(source), health.oldest_transaction_age)
        yield from (live, dead, size, index_size, last_vacuum, vacuums, horizon, oldest)
