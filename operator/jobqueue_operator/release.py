"""Deleting a ``JobQueue`` before the operator goes: what the chart's ``pre-delete`` hook runs
(``python -m jobqueue_operator delete-jobqueue NAME --namespace NS``).

``helm uninstall`` deletes the operator and the chart's own ``JobQueue`` in one pass, the
operator first. kopf's finalizer (``jobqueue.dev/operator``) holds a ``JobQueue`` until the
operator has stopped its daemon and closed its pool; with the operator gone it would hold it
forever, and the uninstall would hang on it. So the hook deletes the ``JobQueue`` first and
waits while the operator still runs. If the operator does not release it within the wait
(scaled to zero, crash-looping), the hook removes that one finalizer itself, since nothing
is left to run its clean-up: the garbage collector then removes the workers all the same.
"""

from __future__ import annotations

import asyncio
import logging
import time

from jobqueue_operator import kube, resource

logger = logging.getLogger("jobqueue_operator.release")

# How often the JobQueue is looked at while the operator releases it.
POLL: float = 0.5


async def delete_jobqueue(api: kube.Api, namespace: str, name: str, wait: float) -> bool:
    """Deletes the JobQueue and returns once it is gone: ``True`` when the operator released
    it within ``wait`` seconds, ``False`` when its finalizer had to be removed here. Another
    party's finalizer is theirs to release: after twice ``wait`` that is a ``TimeoutError``."""
    await api.delete_jobqueue(namespace, name)
    began = time.monotonic()
    released = True
    while (found := await api.get_jobqueue(namespace, name)) is not None:
        meta = found["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        waited = time.monotonic() - began
        if resource.FINALIZER in finalizers and waited >= wait:
            released = False
            logger.warning(
                "JobQueue %s/%s: the operator did not release it within %gs; removing %s",
                namespace,
                name,
                wait,
                resource.FINALIZER,
            )
            kept = [item for item in finalizers if item != resource.FINALIZER]
            try:
                await api.set_finalizers(namespace, name, kept, meta["resourceVersion"])
            except kube.NotFoundError:
                break
            except kube.ApiError as error:
                if error.status != 409:  # 409: changed meanwhile; look again
                    raise
            continue
        if waited >= 2 * wait:
            raise TimeoutError(f"JobQueue {namespace}/{name} is still held by {finalizers}")
        await asyncio.sleep(POLL)
    logger.info(
        "JobQueue %s/%s deleted%s",
        namespace,
        name,
        "" if released else " (its finalizer removed: no operator released it)",
    )
    return released
