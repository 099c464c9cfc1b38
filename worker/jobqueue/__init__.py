"""jobqueue: a job queue on PostgreSQL, with workers and a Kubernetes operator.

The public API is re-exported here; the modules behind it are private layers::

    import jobqueue

    job = await jobqueue.enqueue_job("parseBook", {"bookId": 1, "filePath": "/books/a.epub"})
    print(await jobqueue.get_queue_stats())   # {'pending': 1, 'running': 0, ...}
"""

from jobqueue.audit import AuditEntry
from jobqueue.db import ConfigurationError, ErrorKind, classify_error, describe_database_error
from jobqueue.loops import READY_CHANNEL
from jobqueue.loops import Listener as ReadyListener
from jobqueue.maintenance import (
    QueueDepth,
    TableVacuum,
    VacuumHealth,
    prune_finished_jobs,
    queue_depth,
    running_by_worker,
    vacuum_health,
)
from jobqueue.migrations import MigrationError
from jobqueue.migrations import migrate_database as migrate
from jobqueue.overview import JobCount, QueueSummary, WorkerSummary
from jobqueue.plugins import register_all_handlers
from jobqueue.probes import ProbeServer
from jobqueue.queue import (
    Queue,
    cancel_job,
    cancel_jobs,
    cleanup_stale_locks,
    close_default_queue,
    complete_job,
    configure,
    delete_jobs,
    enqueue_batch,
    enqueue_job,
    enqueue_jobs,
    fail_job,
    get_job_status,
    get_queue_stats,
    list_jobs,
    list_schedules,
    pause_queue,
    paused_queues,
    resume_queue,
    retry_job,
    retry_jobs,
)
from jobqueue.runner import (
    Completion,
    Handler,
    JobHandler,
    PayloadError,
    Registry,
    RetryPolicy,
    RunningJob,
    SeedHandler,
    Snooze,
    handler,
    register_handler,
    register_schedule,
)
from jobqueue.schedules import Schedule, ScheduleRun, ScheduleState
from jobqueue.sync import SyncQueue
from jobqueue.types import (
    DuplicateJob,
    Job,
    JobFilter,
    JobNotFoundError,
    JobOptions,
    JobQueueError,
    JobStateError,
    JobStatus,
    NewJob,
    QueueStats,
    RescuedJob,
)
from jobqueue.worker import (
    Worker,
    WorkerConfig,
    get_worker_state,
    init_job_system,
    start_worker,
    stop_worker,
)

__all__ = [
    "READY_CHANNEL",
    "AuditEntry",
    "Completion",
    "ConfigurationError",
    "DuplicateJob",
    "ErrorKind",
    "Handler",
    "Job",
    "JobCount",
    "JobFilter",
    "JobHandler",
    "JobNotFoundError",
    "JobOptions",
    "JobQueueError",
    "JobStateError",
    "JobStatus",
    "MigrationError",
    "NewJob",
    "PayloadError",
    "ProbeServer",
    "Queue",
    "QueueDepth",
    "QueueStats",
    "QueueSummary",
    "ReadyListener",
    "Registry",
    "RescuedJob",
    "RetryPolicy",
    "RunningJob",
    "Schedule",
    "ScheduleRun",
    "ScheduleState",
    "SeedHandler",
    "Snooze",
    "SyncQueue",
    "TableVacuum",
    "VacuumHealth",
    "Worker",
    "WorkerConfig",
    "WorkerSummary",
    "cancel_job",
    "cancel_jobs",
    "classify_error",
    "cleanup_stale_locks",
    "close_default_queue",
    "complete_job",
    "configure",
    "delete_jobs",
    "describe_database_error",
    "enqueue_batch",
    "enqueue_job",
    "enqueue_jobs",
    "fail_job",
    "get_job_status",
    "get_queue_stats",
    "get_worker_state",
    "handler",
    "init_job_system",
    "list_jobs",
    "list_schedules",
    "migrate",
    "pause_queue",
    "paused_queues",
    "prune_finished_jobs",
    "queue_depth",
    "register_all_handlers",
    "register_handler",
    "register_schedule",
    "resume_queue",
    "retry_job",
    "retry_jobs",
    "running_by_worker",
    "start_worker",
    "stop_worker",
    "vacuum_health",
]
