"""The kopf handlers: a ``JobQueue`` becomes a worker Deployment and its metrics Service, and
a daemon per ``JobQueue`` keeps the workers matched to the queue.

*Owned objects.* On create, on a spec change and when the operator starts (resume), the
Deployment and the Service are server-side applied with field manager
``jobqueue-operator``: the operator owns the fields it sets (``spec.replicas`` among them)
and nothing else, so a user's label or annotation on them stays. Both carry an
ownerReference, so deleting the ``JobQueue`` lets the garbage collector remove them. A new
Deployment starts at 0 replicas: the daemon raises it only after the migrations ran.

*The daemon* (one asyncio task per ``JobQueue``, keyed by its uid) waits for
``pollIntervalSeconds`` or for the database's NOTIFY that jobs are ready, then reconciles,
level-based, from what it reads: the Secret's URL → the queue's depth → ``policy.decide`` →
on a scale-down, the worker pods' ``pod-deletion-cost`` from the jobs each runs (so the
ReplicaSet controller removes idle pods first) → the Deployment's replicas → stale-job
rescue → the retention purge → the database's vacuum health (at most every
``VACUUM_READ_INTERVAL`` seconds) → status, Events and metrics. A missing Secret or an
unreachable database sets ``DatabaseReachable=False`` with an Event, leaves the replicas as
they are (never zero for lack of data), backs off and recovers by itself. The daemon's
monitor (pool and LISTEN) is closed when the ``JobQueue`` is deleted or the operator stops.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import datetime
import logging
import time
import typing

import kopf

import jobqueue
from jobqueue_operator import kube, manifests, metrics, monitor, policy, resource, schedules

Json = dict[str, typing.Any]
Spec = collections.abc.Mapping[str, typing.Any]

logger = logging.getLogger("jobqueue_operator")

# Backoff of a failing reconcile: from the poll interval, doubling, to at most this (or the
# poll interval when that is longer).
MAX_BACKOFF: typing.Final = 15.0
# NOTIFYs come in bursts (one per enqueue): reconciles are at least this far apart.
MIN_RECONCILE_GAP: typing.Final = 0.25
# The database's vacuum health is read at most this often: its statistics move slowly, and
# with a short poll interval or a burst of NOTIFYs reconciles come many times a minute.
VACUUM_READ_INTERVAL: typing.Final = 30.0

READY = "Ready"
DATABASE_REACHABLE = "DatabaseReachable"
SCALING = "Scaling"


class Unavailable(Exception):
    """The queue cannot be reconciled now; ``reason`` becomes the conditions' reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def database_trouble(error: BaseException) -> Unavailable | None:
    """``error`` as the reason the queue cannot be reconciled, when it is about the database
    as the core sorts errors (``jobqueue.classify_error``: cannot reach it, or a setting that
    will not fix itself); ``None`` for anything else (a bug, bad data), which must not pass
    for an outage."""
    if isinstance(error, jobqueue.MigrationError):
        return Unavailable("MigrationFailed", f"{type(error).__name__}: {error}")
    if isinstance(error, jobqueue.ConfigurationError):  # the Secret holds an empty URL
        return Unavailable("DatabaseUnreachable", str(error))
    if jobqueue.classify_error(error) is None:
        return None
    return Unavailable("DatabaseUnreachable", jobqueue.describe_database_error(error))


@contextlib.contextmanager
def database_calls() -> collections.abc.Iterator[None]:
    """Turns the database's errors raised inside into ``Unavailable`` (conditions, Event,
    back-off); the rest goes on up, to be reported as ``ReconcileFailed`` with a traceback."""
    try:
        yield
    except Exception as error:
        trouble = database_trouble(error)
        if trouble is None:
            raise
        raise trouble from None


@dataclasses.dataclass
class QueueState:
    """What the operator remembers of one ``JobQueue`` between reconciles."""

    namespace: str
    name: str
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    monitor: monitor.QueueMonitor | None = None
    opened: bool = False
    scale_state: policy.ScaleState = dataclasses.field(default_factory=policy.ScaleState)
    rescued: int = 0
    purged: int = 0
    last_scale_time: str | None = None
    last_scale_reason: str | None = None
    problem: str | None = None  # the last failure reported, so it is posted once

    async def close_monitor(self) -> None:
        if self.monitor is not None:
            current, self.monitor, self.opened = self.monitor, None, False
            await current.close()


@dataclasses.dataclass
class Runtime:
    """The operator's shared parts, in kopf's memo as ``memo.runtime``."""

    api: kube.Api
    metrics: metrics.OperatorMetrics
    reconcile_timeout: float
    queues: dict[str, QueueState] = dataclasses.field(default_factory=dict)

    def queue(self, uid: str, namespace: str, name: str) -> QueueState:
        if uid not in self.queues:
            self.queues[uid] = QueueState(namespace, name)
        return self.queues[uid]


@kopf.on.login()
def login(**_: typing.Any) -> kopf.ConnectionInfo:
    """kopf's credentials are the operator's own (``kube.login``): the ServiceAccount at
    ``KUBERNETES_SERVICE_HOST``, else the kubeconfig."""
    return kube.login()


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's settings: its state in our annotations, no CRD scanning (no rights needed),
    Events only for warnings and what the handlers post themselves."""
    settings.persistence.finalizer = resource.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=resource.API_GROUP
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=resource.API_GROUP, key="last-handled-configuration"
    )
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _runtime(memo: typing.Any) -> Runtime:
    return typing.cast(Runtime, memo.runtime)


# --- owned objects -----------------------------------------------------------------------


async def apply_owned(
    api: kube.Api, body: kopf.Body, spec: Spec, replicas: int | None = None
) -> Json:
    """Applies the Service and the Deployment, the latter with ``replicas`` (default: what
    it has now, 0 when it is new). Returns the Deployment."""
    owner = manifests.Owner.of(body)
    if replicas is None:
        existing = await api.get_deployment(owner.namespace, manifests.workers_name(owner))
        replicas = int(existing["spec"].get("replicas", 0)) if existing else 0
    await api.apply(manifests.metrics_service(owner))
    return await api.apply(manifests.worker_deployment(owner, spec, replicas))


@kopf.on.resume(resource.API_GROUP, resource.API_VERSION, resource.PLURAL)
@kopf.on.create(resource.API_GROUP, resource.API_VERSION, resource.PLURAL)
@kopf.on.update(resource.API_GROUP, resource.API_VERSION, resource.PLURAL, field="spec")
async def owned_objects(
    body: kopf.Body, spec: kopf.Spec, uid: str, memo: typing.Any, **_: typing.Any
) -> None:
    runtime = _runtime(memo)
    owner = manifests.Owner.of(body)
    state = runtime.queue(uid, owner.namespace, owner.name)
    async with state.lock:
        try:
            await apply_owned(runtime.api, body, spec)
        except kube.ApiError as error:
            raise kopf.TemporaryError(f"applying the workers failed: {error}", delay=10) from None
    state.wake.set()  # a changed spec: reconcile now


# --- the daemon --------------------------------------------------------------------------


@kopf.daemon(
    resource.API_GROUP,
    resource.API_VERSION,
    resource.PLURAL,
    # Stopped by its flag first (it wakes at once); cancelled only if a reconcile hangs.
    cancellation_backoff=10.0,
    cancellation_timeout=30.0,
)
async def watch_queue(
    body: kopf.Body,
    spec: kopf.Spec,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: typing.Any,
    **_: typing.Any,
) -> None:
    runtime = _runtime(memo)
    namespace, name = manifests.Owner.of(body).namespace, manifests.Owner.of(body).name
    state = runtime.queue(uid, namespace, name)
    runtime.metrics.track(namespace, name)
    failures = 0
    try:
        while not stopped:
            state.wake.clear()  # a NOTIFY from here on wakes the next pass
            began = time.monotonic()
            failed = True
            poll = _poll_interval(spec)
            try:
                async with asyncio.timeout(runtime.reconcile_timeout):
                    await reconcile(runtime, state, body, spec)
                failed = False
            except Unavailable as trouble:
                await _report_trouble(runtime, state, body, trouble)
            except TimeoutError:
                await _report_trouble(
                    runtime,
                    state,
                    body,
                    Unavailable(
                        "ReconcileTimeout",
                        f"a reconcile took longer than {runtime.reconcile_timeout:g}s",
                    ),
                )
            except Exception as error:  # a bug or an API refusal: said, and tried again
                logger.exception("Reconciling %s/%s failed", namespace, name)
                await _report_trouble(
                    runtime, state, body, Unavailable("ReconcileFailed", f"{error}")
                )
            runtime.metrics.reconcile(namespace, name, time.monotonic() - began, error=failed)
            failures = failures + 1 if failed else 0
            delay = _backoff(poll, failures)
            await _wait(state.wake, stopped, delay)
            gap = MIN_RECONCILE_GAP - (time.monotonic() - began)
            if gap > 0 and not stopped:
                await _wait(asyncio.Event(), stopped, gap)
    finally:
        runtime.queues.pop(uid, None)
        runtime.metrics.forget(namespace, name)
        await state.close_monitor()
        logger.info("Stopped watching JobQueue %s/%s", namespace, name)


def _backoff(poll: float, failures: int) -> float:
    if not failures:
        return poll
    return float(min(poll * 2 ** (failures - 1), max(poll, MAX_BACKOFF)))


def _poll_interval(spec: Spec) -> float:
    try:
        return policy.Scaling.from_spec(spec.get("scaling")).poll_interval
    except policy.SpecError:
        return policy.Scaling().poll_interval


async def _wait(wake: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    """Until ``wake`` is set, the daemon is stopped, or ``delay`` seconds pass."""

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())}
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _database_url(api: kube.Api, namespace: str, spec: Spec) -> str:
    ref = spec["database"]["secretRef"]
    key = ref.get("key", "url")
    try:
        return await api.read_secret_key(namespace, ref["name"], key)
    except kube.NotFoundError:
        raise Unavailable(
            "SecretMissing", f"Secret {ref['name']} (spec.database.secretRef) not found"
        ) from None
    except KeyError:
        raise Unavailable("SecretKeyMissing", f"Secret {ref['name']} has no key {key!r}") from None


async def _monitor(state: QueueState, url: str, queue_name: str) -> monitor.QueueMonitor:
    """The queue's monitor, opened (migrations applied, LISTEN started); a new one when the
    URL or the queue changed."""
    current = state.monitor
    if current is not None and (current.database_url, current.queue_name) != (url, queue_name):
        await state.close_monitor()
        current = None
    if current is None:
        loop = asyncio.get_running_loop()

        def wake() -> None:  # thread-safe: whatever thread the NOTIFY arrives on
            loop.call_soon_threadsafe(state.wake.set)

        current = state.monitor = monitor.QueueMonitor(
            url,
            queue_name,
            on_ready=wake,
            name=f"jobqueue-operator:{state.namespace}/{state.name}",
        )
    if not state.opened:
        with database_calls():
            await current.open()
        state.opened = True
    return current


async def reconcile(runtime: Runtime, state: QueueState, body: kopf.Body, spec: Spec) -> None:
    """One level-based pass over a ``JobQueue`` (see the module docstring)."""
    api, owner = runtime.api, manifests.Owner.of(body)
    generation = body["metadata"].get("generation")
    try:
        scaling = policy.Scaling.from_spec(spec.get("scaling"))
    except policy.SpecError as error:
        raise Unavailable("InvalidSpec", str(error)) from None
    queue_name = spec.get("queue", "default")
    try:
        periodic = schedules.from_spec(spec.get("schedules"), queue_name)
    except schedules.ScheduleSpecError as error:
        raise Unavailable("InvalidSpec", str(error)) from None
    url = await _database_url(api, owner.namespace, spec)
    queue = await _monitor(state, url, queue_name)
    with database_calls():
        # Before the depth is read: a tick due within the poll counts as due soon, so a
        # queue at zero replicas has a worker up in time for it.
        ticked = await queue.run_schedules(periodic, ahead=scaling.poll_interval)
        depth = await queue.observe(due_within=scaling.poll_interval)
    if ticked is not None and ticked.enqueued:
        logger.info(
            "%s/%s enqueued %s",
            owner.namespace,
            owner.name,
            ", ".join(f"{job.unique_key} ({job.id})" for job in ticked.enqueued),
        )

    async with state.lock:
        deployment = await api.get_deployment(owner.namespace, manifests.workers_name(owner))
        if deployment is None:  # deleted by hand, or the create handler has not run yet
            deployment = await apply_owned(api, body, spec, replicas=0)
        current = int(deployment["spec"].get("replicas", 0))
        seen = policy.Observation(depth.claimable, depth.running, depth.due_soon, depth.paused)
        decision, state.scale_state = policy.decide(
            scaling, seen, current, state.scale_state, time.monotonic()
        )
        if decision.replicas != current:
            if decision.replicas < current:
                await _mark_deletion_costs(api, owner, queue)
            deployment = await apply_owned(api, body, spec, replicas=decision.replicas)
            state.last_scale_time, state.last_scale_reason = _now(), decision.reason
            runtime.metrics.scaled(owner.namespace, owner.name, decision.direction)
            logger.info(
                "Scaled %s/%s %s from %d to %d replicas: %s",
                owner.namespace,
                owner.name,
                decision.direction,
                current,
                decision.replicas,
                decision.reason,
            )
            kopf.event(
                body,
                type="Normal",
                reason="ScaledUp" if decision.direction == policy.UP else "ScaledDown",
                message=decision.reason,
            )

    with database_calls():
        rescued = await queue.rescue(float(spec.get("staleJobTimeoutSeconds", 300)))
        retention = spec.get("retention") or {}
        purged = await queue.prune(
            done_older_than=float(retention.get("doneSeconds", 604_800)),
            failed_older_than=float(retention.get("failedSeconds", 2_592_000)),
        )
        vacuum = await queue.vacuum_health(every=VACUUM_READ_INTERVAL)
    if rescued:
        state.rescued += len(rescued)
        runtime.metrics.rescued(owner.namespace, owner.name, len(rescued))
        workers = sorted({job.worker_id or "?" for job in rescued})
        message = (
            f"rescued {len(rescued)} stale jobs (no heartbeat for"
            f" {spec.get('staleJobTimeoutSeconds', 300)}s) of {', '.join(workers)}:"
            f" {', '.join(str(job.id) for job in rescued[:10])}"
            + (" ..." if len(rescued) > 10 else "")
        )
        logger.info("%s/%s %s", owner.namespace, owner.name, message)
        kopf.event(body, type="Warning", reason="RescuedStaleJobs", message=message)
    if purged:
        state.purged += purged
        runtime.metrics.pruned(owner.namespace, owner.name, purged)
    if vacuum is not None:
        runtime.metrics.vacuum_health(owner.namespace, owner.name, vacuum)

    current = int(deployment["spec"].get("replicas", 0))
    runtime.metrics.observe(
        owner.namespace,
        owner.name,
        depth,
        decision.replicas,
        current,
        maximum=scaling.max_replicas,
    )
    if state.problem is not None:
        kopf.event(body, type="Normal", reason="DatabaseReachable", message="reconciling again")
        state.problem = None
    workers = deployment.get("status", {})
    ready_workers = int(workers.get("readyReplicas", 0))
    conditions = {
        DATABASE_REACHABLE: (
            "True",
            "Connected",
            f"queue {queue.queue_name!r} observed; "
            + ("listening for NOTIFY" if queue.listening else "polling only, LISTEN is down"),
        ),
        SCALING: (
            "True" if decision.direction != policy.NONE else "False",
            {policy.UP: "ScaledUp", policy.DOWN: "ScaledDown"}.get(decision.direction, "Steady"),
            decision.reason,
        ),
        READY: (
            "True",
            "Reconciled",
            f"{ready_workers} of {decision.replicas} workers ready",
        ),
    }
    status: Json = {
        "observedGeneration": generation,
        "ready": depth.ready,
        "delayed": depth.delayed,
        "pending": depth.ready + depth.delayed,
        "running": depth.running,
        "failed": depth.failed,
        "done": depth.done,
        "cancelled": depth.cancelled,
        "paused": depth.paused,
        "heldByLimits": depth.held,
        "oldestReadyAgeSeconds": (
            round(depth.oldest_ready_age, 3) if depth.oldest_ready_age is not None else None
        ),
        "desiredReplicas": decision.replicas,
        "currentReplicas": int(workers.get("replicas", 0)),
        "readyReplicas": ready_workers,
        "rescuedJobs": state.rescued,
        "purgedJobs": state.purged,
        "conditions": _conditions(body, conditions, generation),
    }
    # None removes the field (a merge patch) once the spec has no schedules left.
    status["schedules"] = None
    if ticked is not None:
        with database_calls():
            states = await queue.schedule_states(periodic)
        status["schedules"] = [
            {
                "name": each.name,
                "timing": each.timing,
                "nextRunAt": each.next_run_at and each.next_run_at.isoformat(),
                "lastRunAt": each.last_run_at and each.last_run_at.isoformat(),
            }
            for each in states
        ]
    if state.last_scale_time is not None:
        status["lastScaleTime"] = state.last_scale_time
        status["lastScaleReason"] = state.last_scale_reason
    await api.patch_status(owner.namespace, owner.name, status)


async def _mark_deletion_costs(
    api: kube.Api, owner: manifests.Owner, queue: monitor.QueueMonitor
) -> None:
    """Each worker pod's deletion cost = the jobs it runs, so idle pods go first."""
    with database_calls():
        running = await queue.running_by_worker()
    for pod in await api.list_pods(owner.namespace, manifests.label_selector(owner)):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        cost = str(running.get(meta["name"], 0))
        if (meta.get("annotations") or {}).get(manifests.DELETION_COST) != cost:
            with_cost = manifests.deletion_cost_patch(running.get(meta["name"], 0))
            try:
                await api.patch_pod(owner.namespace, meta["name"], with_cost)
            except kube.NotFoundError:
                continue  # gone meanwhile


def _conditions(
    body: kopf.Body,
    wanted: collections.abc.Mapping[str, tuple[str, str, str]],
    generation: int | None,
) -> list[Json]:
    """The conditions with ``lastTransitionTime`` kept while the status stays the same."""
    previous = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or ()}
    now = _now()
    conditions = []
    for kind, (status, reason, message) in wanted.items():
        before = previous.get(kind) or {}
        changed = before.get("status") != status
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message[:1000],
                "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
                "observedGeneration": generation,
            }
        )
    return conditions


async def _report_trouble(
    runtime: Runtime, state: QueueState, body: kopf.Body, trouble: Unavailable
) -> None:
    """Conditions and (once per distinct problem) an Event; the replicas stay."""
    namespace, name = state.namespace, state.name
    logger.warning("JobQueue %s/%s: %s: %s", namespace, name, trouble.reason, trouble.message)
    if state.problem != f"{trouble.reason}: {trouble.message}":
        state.problem = f"{trouble.reason}: {trouble.message}"
        kopf.event(body, type="Warning", reason=trouble.reason, message=trouble.message)
    database = trouble.reason in {
        "SecretMissing",
        "SecretKeyMissing",
        "DatabaseUnreachable",
        "MigrationFailed",
    }
    previous = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or ()}
    wanted = {READY: ("False", trouble.reason, trouble.message)}
    if database:
        wanted[DATABASE_REACHABLE] = ("False", trouble.reason, trouble.message)
    elif DATABASE_REACHABLE in previous:
        kept = previous[DATABASE_REACHABLE]
        wanted[DATABASE_REACHABLE] = (
            kept["status"],
            kept.get("reason", ""),
            kept.get("message", ""),
        )
    wanted[SCALING] = ("False", "Paused", "replicas kept while the queue cannot be reconciled")
    try:
        await runtime.api.patch_status(
            namespace,
            name,
            {
                "observedGeneration": body["metadata"].get("generation"),
                "conditions": _conditions(body, wanted, body["metadata"].get("generation")),
            },
        )
    except kube.ApiError as error:
        logger.warning("JobQueue %s/%s: status not written: %s", namespace, name, error)
