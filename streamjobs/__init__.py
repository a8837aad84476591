"""streamjobs: a job queue for Python on Redis Streams.

Priorities, timeouts, retries with exponential backoff, leases that survive dead workers,
a dead-letter stream, progress, events and metrics, on asyncio or trio.
"""

from ._schedules import ScheduleInfo
from .async_worker import AsyncWorkerPool, Timings
from .errors import (
    ConfigurationError,
    InvalidJobError,
    JobCancelled,
    JobFailed,
    JobNotFoundError,
    PartialSubmitError,
    QueueFullError,
    RedisAuthError,
    RedisNotReadyError,
    RedisUnavailableError,
    RedisVersionError,
    ReplicationError,
    StreamJobsError,
)
from .models import (
    TERMINAL_STATUSES,
    CancelOutcome,
    DedupeMode,
    JobDefinition,
    JobPriority,
    JobProgress,
    JobResult,
    JobStatus,
    LimitInfo,
    WorkerInfo,
)
from .redis_queue import RedisJobQueue
from .service import JobService

__all__ = [
    "TERMINAL_STATUSES",
    "AsyncWorkerPool",
    "CancelOutcome",
    "ConfigurationError",
    "DedupeMode",
    "InvalidJobError",
    "JobCancelled",
    "JobDefinition",
    "JobFailed",
    "JobNotFoundError",
    "JobPriority",
    "JobProgress",
    "JobResult",
    "JobService",
    "JobStatus",
    "LimitInfo",
    "PartialSubmitError",
    "QueueFullError",
    "RedisAuthError",
    "RedisJobQueue",
    "RedisNotReadyError",
    "RedisUnavailableError",
    "RedisVersionError",
    "ReplicationError",
    "ScheduleInfo",
    "StreamJobsError",
    "Timings",
    "WorkerInfo",
]
