"""``python -m jobqueue_operator``: kopf with the handlers of ``jobqueue_operator.handlers``,
the operator's ``/metrics`` and ``/healthz`` server, settings from the environment
(``jobqueue_operator.settings``).

Standalone unless ``JOBQUEUE_OPERATOR_PEERING`` names a kopf peering (then several replicas
may run, one active); every namespace unless ``JOBQUEUE_OPERATOR_NAMESPACES`` lists some.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys

import kopf

from jobqueue_operator import handlers, kube, metrics, settings

logger = logging.getLogger("jobqueue_operator")


async def run() -> None:
    port = settings.METRICS_PORT.from_env()
    namespaces = settings.NAMESPACES.from_env() or []
    peering = settings.PEERING.from_env() or None
    runtime = handlers.Runtime(
        api=kube.Api(kube.load_configuration()),
        metrics=metrics.OperatorMetrics(),
        reconcile_timeout=settings.RECONCILE_TIMEOUT.from_env(),
    )
    ready = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def healthy() -> tuple[bool, str]:
        return (True, "ok") if ready.is_set() else (False, "kopf is starting")

    server = await metrics.serve(port, healthy, runtime.metrics.registry)
    operator_settings = kopf.OperatorSettings()
    handlers.configure(operator_settings)
    # Peers of equal priority would all pause: each replica draws its own.
    priority = random.SystemRandom().randint(1, 1_000_000_000) if peering else 0
    logger.info(
        "jobqueue operator starting: %s, %s",
        f"peering {peering!r} with priority {priority}" if peering else "standalone",
        f"namespaces {', '.join(namespaces)}" if namespaces else "all namespaces",
    )
    try:
        await kopf.operator(
            settings=operator_settings,
            standalone=peering is None,
            peering_name=peering,
            priority=priority,
            clusterwide=not namespaces,
            namespaces=namespaces,
            memo=kopf.Memo(runtime=runtime),
            ready_flag=ready,
            stop_flag=stop,
        )
    finally:
        await server.close()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    asyncio.run(run())


if __name__ == "__main__":
    main()
