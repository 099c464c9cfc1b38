"""The operator's metrics (K4), once per ``JobQueue`` rather than from every worker: the
queue's jobs by state and type and its oldest ready job (the core's ``QueueDepthCollector``,
labelled by namespace and JobQueue), the vacuum health of its database (the core's
``VacuumHealthCollector``, likewise), desired and current replicas, scale events, rescued and
purged jobs, and reconcile duration and errors. Names are the constants of
``jobqueue.metrics``; objects are made against the registry given."""

from __future__ import annotations

import collections.abc
import contextlib

import prometheus_client
import prometheus_client.metrics
import prometheus_client.registry

import jobqueue
from jobqueue import metrics as names
from jobqueue_operator import monitor, policy

_SOURCE = ("namespace", "jobqueue")


class OperatorMetrics:
    def __init__(self, registry: prometheus_client.registry.CollectorRegistry | None = None):
        self.registry = registry or prometheus_client.REGISTRY
        self.depth = names.QueueDepthCollector(source_labels=_SOURCE)
        self.registry.register(self.depth)
        self.vacuum = names.VacuumHealthCollector(source_labels=_SOURCE)
        self.registry.register(self.vacuum)
        self.desired = prometheus_client.Gauge(
            names.OPERATOR_DESIRED_REPLICAS,
            "Worker replicas the scaling policy wants.",
            _SOURCE,
            registry=self.registry,
        )
        self.current = prometheus_client.Gauge(
            names.OPERATOR_CURRENT_REPLICAS,
            "Worker replicas the Deployment has.",
            _SOURCE,
            registry=self.registry,
        )
        self.maximum = prometheus_client.Gauge(
            names.OPERATOR_MAX_REPLICAS,
            "The most worker replicas the JobQueue allows (spec.scaling.maxReplicas).",
            _SOURCE,
            registry=self.registry,
        )
        self.scale_events = prometheus_client.Counter(
            names.OPERATOR_SCALE_EVENTS,
            "Changes of the worker replicas, by direction (up, down).",
            [*_SOURCE, "direction"],
            registry=self.registry,
        )
        self.rescued_jobs = prometheus_client.Counter(
            names.OPERATOR_RESCUED_JOBS,
            "Stale jobs (of dead workers) the operator put back in the queue or failed.",
            _SOURCE,
            registry=self.registry,
        )
        self.pruned_jobs = prometheus_client.Counter(
            names.OPERATOR_PRUNED_JOBS,
            "Finished jobs deleted by the retention purge.",
            _SOURCE,
            registry=self.registry,
        )
        self.reconcile_duration = prometheus_client.Histogram(
            names.OPERATOR_RECONCILE_DURATION,
            "Time one reconcile of a JobQueue took.",
            _SOURCE,
            registry=self.registry,
        )
        self.reconcile_errors = prometheus_client.Counter(
            names.OPERATOR_RECONCILE_ERRORS,
            "Reconciles of a JobQueue that failed (database unreachable, API error...).",
            _SOURCE,
            registry=self.registry,
        )

    def observe(
        self,
        namespace: str,
        name: str,
        depth: monitor.Depth,
        desired: int,
        current: int,
        maximum: int | None = None,
    ) -> None:
        self.depth.update(depth.by_type, (namespace, name))
        self.desired.labels(namespace, name).set(desired)
        self.current.labels(namespace, name).set(current)
        if maximum is not None:
            self.maximum.labels(namespace, name).set(maximum)

    def vacuum_health(self, namespace: str, name: str, health: jobqueue.VacuumHealth) -> None:
        self.vacuum.update(health, (namespace, name))

    def scaled(self, namespace: str, name: str, direction: str) -> None:
        self.scale_events.labels(namespace, name, direction).inc()

    def rescued(self, namespace: str, name: str, count: int) -> None:
        self.rescued_jobs.labels(namespace, name).inc(count)

    def pruned(self, namespace: str, name: str, count: int) -> None:
        self.pruned_jobs.labels(namespace, name).inc(count)

    def track(self, namespace: str, name: str) -> None:
        """Makes a JobQueue's counters, at zero, before its first reconcile: increase() sees
        a counter's first step only after a sample before it, so a counter born at 1 would
        hide the first rescue or error from the panels and the alerts."""
        for counter in (self.rescued_jobs, self.pruned_jobs, self.reconcile_errors):
            counter.labels(namespace, name)
        for direction in (policy.UP, policy.DOWN):
            self.scale_events.labels(namespace, name, direction)

    def reconcile(self, namespace: str, name: str, seconds: float, *, error: bool) -> None:
        self.reconcile_duration.labels(namespace, name).observe(seconds)
        if error:
            self.reconcile_errors.labels(namespace, name).inc()

    def forget(self, namespace: str, name: str) -> None:
        """A deleted JobQueue's series go away."""
        self.depth.forget((namespace, name))
        self.vacuum.forget((namespace, name))
        families: list[tuple[prometheus_client.metrics.MetricWrapperBase, tuple[str, ...]]] = [
            (family, (namespace, name))
            for family in (
                self.desired,
                self.current,
                self.maximum,
                self.rescued_jobs,
                self.pruned_jobs,
                self.reconcile_duration,
                self.reconcile_errors,
            )
        ]
        families += [
            (self.scale_events, (namespace, name, direction))
            for direction in (policy.UP, policy.DOWN)
        ]
        for family, labels in families:
            with contextlib.suppress(KeyError):  # never observed: nothing to remove
                family.remove(*labels)


async def serve(
    port: int,
    healthy: collections.abc.Callable[[], tuple[bool, str]],
    registry: prometheus_client.registry.CollectorRegistry | None = None,
) -> jobqueue.ProbeServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``port``; returns the started server."""
    server = jobqueue.ProbeServer(healthy, healthy, port=port, registry=registry)
    await server.start()
    return server
