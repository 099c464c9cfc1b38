"""``python -m jobqueue_operator``: kopf with the handlers of ``jobqueue_operator.handlers``,
the operator's ``/metrics`` and ``/healthz`` server, settings from the environment
(``jobqueue_operator.settings``).

Standalone unless ``JOBQUEUE_OPERATOR_PEERING`` names a kopf peering (then several replicas
may run, one active); every namespace unless ``JOBQUEUE_OPERATOR_NAMESPACES`` lists some.
``python -m jobqueue_operator delete-jobqueue NAME --namespace NS`` is the chart's
``pre-delete`` hook instead (``jobqueue_operator.release``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import logging
import random
import signal
import sys

import kopf

from jobqueue_operator import handlers, kube, metrics, release, settings

logger = logging.getLogger("jobqueue_operator")


async def run() -> None:
    port = settings.METRICS_PORT.from_env()
    namespaces = settings.NAMESPACES.from_env() or []
    peering = settings.PEERING.from_env() or None
    runtime = handlers.Runtime(
        api=kube.Api(),
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
        await runtime.api.close()
        await server.close()


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="python -m jobqueue_operator",
        description="The jobqueue operator (kopf); settings from JOBQUEUE_OPERATOR_* variables.",
    )
    commands = made.add_subparsers(dest="command", metavar="COMMAND")
    delete = commands.add_parser(
        "delete-jobqueue",
        help="delete a JobQueue and wait for the operator to release it (the chart's"
        " pre-delete hook)",
    )
    delete.add_argument("name", help="the JobQueue")
    delete.add_argument("--namespace", required=True, help="its namespace")
    delete.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for the operator before removing its finalizer (default 60)",
    )
    return made


async def delete_jobqueue(namespace: str, name: str, wait: float) -> None:
    api = kube.Api()
    try:
        await release.delete_jobqueue(api, namespace, name, wait)
    finally:
        await api.close()


def main(argv: collections.abc.Sequence[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    if arguments.command == "delete-jobqueue":
        asyncio.run(delete_jobqueue(arguments.namespace, arguments.name, arguments.wait))
        return
    asyncio.run(run())


if __name__ == "__main__":
    main()
