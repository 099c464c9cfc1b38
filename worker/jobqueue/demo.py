"""``jobqueue demo``: the queue end to end on an embedded PostgreSQL (or ``$DATABASE_URL``).

It migrates, enqueues word-count jobs over the documentation topics that ship with Python
(``pydoc_data.topics``) plus one job that cannot succeed, runs a worker until no job is
ready, and prints each job's outcome and the queue statistics.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import typing

from jobqueue import db, embedded, migrations, runner, types, worker
from jobqueue import queue as queue_module

_WORD = re.compile(r"\w+")
DEMO_WORKER: typing.Final = "demo-worker"


def topic_texts(count: int) -> dict[str, str]:
    """``count`` of Python's own documentation topics, the longest first."""
    import pydoc_data.topics

    topics: dict[str, str] = pydoc_data.topics.topics
    chosen = sorted(topics, key=lambda name: (-len(topics[name]), name))[:count]
    return {name: topics[name] for name in chosen}


class TopicPayload(typing.TypedDict):
    topic: str


def count_words(payload: TopicPayload, job: types.Job) -> dict[str, typing.Any]:
    """The demo's job: words in one documentation topic, and its most common long words."""
    texts = topic_texts(10_000)
    topic = payload["topic"]
    if topic not in texts:
        raise LookupError(f"no documentation topic named {topic!r}")
    words = [word.lower() for word in _WORD.findall(texts[topic])]
    common = collections.Counter(word for word in words if len(word) > 3).most_common(3)
    return {"topic": topic, "words": len(words), "common": [word for word, _ in common]}


async def _run_on(database_url: str, job_count: int) -> int:
    conn = await db.connect(database_url)
    async with conn:
        await migrations.migrate(conn)
    registry = runner.Registry()
    registry.register(
        runner.FunctionHandler("countWords", count_words, retry=runner.RetryPolicy(delay=0.0))
    )
    async with queue_module.Queue(database_url) as queue:
        specs = [types.NewJob("countWords", {"topic": name}) for name in topic_texts(job_count)]
        specs.append(types.NewJob("countWords", {"topic": "no-such-topic"}, max_attempts=2))
        enqueued = await queue.enqueue_jobs(specs)
        print(f"enqueued {len(enqueued)} jobs")
        config = worker.WorkerConfig(concurrency=4, burst=True, worker_id=DEMO_WORKER)
        await worker.serve(worker.make_worker(config, database_url=database_url, registry=registry))
        print(f"\n{'JOB':<36}  {'STATUS':<7}  {'TRIES':>5}  RESULT")
        for job in enqueued:
            final = await queue.get_job_status(job.id)
            assert final is not None
            outcome = final.result if final.status == "done" else final.error
            print(f"{final.id}  {final.status:<7}  {final.attempts:>5}  {outcome}")
        stats = await queue.get_queue_stats()
        print(f"\nqueue stats: {stats}")
    return 0


async def run(database_url: str | None = None, job_count: int = 12) -> int:
    url = database_url or os.environ.get(db.DATABASE_URL_ENV)
    with contextlib.ExitStack() as stack:
        if not url:
            print("starting an embedded PostgreSQL (set DATABASE_URL to use your own)")
            url = stack.enter_context(embedded.embedded_postgres())
        return await _run_on(url, job_count)
    return 1  # unreachable: ExitStack does not swallow exceptions
