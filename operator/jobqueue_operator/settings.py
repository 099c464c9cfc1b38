"""The operator's settings, declared like the core's (``jobqueue.settings``) and listed with
them by ``jobqueue settings`` through the ``jobqueue.settings`` entry point. A JobQueue's
own behaviour is in its spec; these are the operator process's."""

from __future__ import annotations

import typing

from jobqueue import settings

METRICS_PORT = settings.Setting(
    "operator_metrics_port",
    "JOBQUEUE_OPERATOR_METRICS_PORT",
    settings.Kind.INTEGER,
    "the operator serves /metrics, /healthz and /readyz on this port",
    default=8080,
    group="operator",
    minimum=1,
    maximum=65535,
    zero="any free port",
    cli=False,
)
NAMESPACES = settings.Setting(
    "operator_namespaces",
    "JOBQUEUE_OPERATOR_NAMESPACES",
    settings.Kind.LIST,
    "namespaces whose JobQueues the operator handles (comma-separated)",
    group="operator",
    unset="all namespaces",
    cli=False,
)
PEERING = settings.Setting(
    "operator_peering",
    "JOBQUEUE_OPERATOR_PEERING",
    settings.Kind.TEXT,
    "kopf peering name: several operator replicas, one active; unset runs standalone",
    group="operator",
    unset="standalone",
    cli=False,
)
RECONCILE_TIMEOUT = settings.Setting(
    "operator_reconcile_timeout",
    "JOBQUEUE_OPERATOR_RECONCILE_TIMEOUT",
    settings.Kind.DURATION,
    "the longest one reconcile of a JobQueue may take before it counts as failed",
    default=60.0,
    group="operator",
    minimum=1.0,
    maximum=3600.0,
    cli=False,
)

SETTINGS: typing.Final = (METRICS_PORT, NAMESPACES, PEERING, RECONCILE_TIMEOUT)
