"""jobqueue: a job queue on PostgreSQL, with workers and a Kubernetes operator.

The public API is re-exported here; the modules behind it are private layers::

    import jobqueue

    job = await jobqueue.enqueue_job("parseBook", {"bookId": 1, "filePath": "/books/a.epub"})
    print(await jobqueue.get_queue_stats())   # {'pending': 1, 'running': 0, ...}
"""

from jobqueue.db import ConfigurationError
from jobqueue.migrations import MigrationError
from jobqueue.queue import (
    Queue,
    cleanup_stale_locks,
    close_default_queue,
    complete_job,
    configure,
    enqueue_job,
    enqueue_jobs,
    fail_job,
    get_job_status,
    get_queue_stats,
)
from jobqueue.sync import SyncQueue
from jobqueue.types import (
    Job,
    JobNotFoundError,
    JobQueueError,
    JobStateError,
    JobStatus,
    NewJob,
    QueueStats,
)

__all__ = [
    "ConfigurationError",
    "Job",
    "JobNotFoundError",
    "JobQueueError",
    "JobStateError",
    "JobStatus",
    "MigrationError",
    "NewJob",
    "Queue",
    "QueueStats",
    "SyncQueue",
    "cleanup_stale_locks",
    "close_default_queue",
    "complete_job",
    "configure",
    "enqueue_job",
    "enqueue_jobs",
    "fail_job",
    "get_job_status",
    "get_queue_stats",
]
