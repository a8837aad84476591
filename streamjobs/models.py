"""The public records of the contract: priorities, statuses, job definitions, results, workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum, IntEnum
from typing import Any, Literal


class JobPriority(IntEnum):
    """Priority levels; each is its own Redis stream, read highest first."""

    LOW = 0
    NORMAL = 10
    HIGH = 20
    CRITICAL = 30


class JobStatus(str, Enum):
    """Where a job stands; see `TERMINAL_STATUSES` for the ones it never leaves."""

    PENDING = "PENDING"
    #: Waits for its dependencies (`depends_on`) to complete; then PENDING or SCHEDULED.
    WAITING = "WAITING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DEAD_LETTER = "DEAD_LETTER"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for states a job never leaves by itself."""
        return self in TERMINAL_STATUSES


#: How `submit_job(..., dedupe_key=...)` deduplicates (see JobService.submit_job).
DedupeMode = Literal["until_done", "throttle", "debounce"]

#: What a dependent job does when a dependency ends FAILED, DEAD_LETTER or CANCELLED.
DependencyFailure = Literal["cancel", "run"]


class CancelOutcome(str, Enum):
    """What `cancel_job` did. Its truth value says whether the job was cancelled, so that
    `if await svc.cancel_job(job_id):` reads as it did when the answer was a bool."""

    #: It had not started (pending, scheduled or waiting to retry): it never will.
    CANCELLED = "CANCELLED"
    #: It was running: it ended CANCELLED, and its worker was told to stop the handler.
    REQUESTED = "REQUESTED"
    #: Nothing: the job was already finished, or no record exists for the id.
    NOTHING = "NOTHING"

    def __str__(self) -> str:
        return self.value

    def __bool__(self) -> bool:
        return self is not CancelOutcome.NOTHING


TERMINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEAD_LETTER, JobStatus.CANCELLED}
)


def timestamp(ms: int | None) -> datetime | None:
    """A Redis millisecond timestamp as an aware UTC datetime (None stays None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass
class JobDefinition:
    """A job as a handler sees it, and as `get_dead_letters()` returns it."""

    id: str
    handler: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: JobPriority = JobPriority.NORMAL
    timeout: float | None = 300.0
    max_retries: int = 3
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    attempts: int = 0
    status: JobStatus = JobStatus.PENDING
    created_at: datetime | None = None
    error: str | None = None
    #: The results of the jobs this one depends on, by id (None for one that did not complete).
    dependency_results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    """The outcome of a job that reached a terminal state."""

    job_id: str
    status: JobStatus
    result: Any = None
    error: str | None = None
    attempts: int = 0
    duration: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def success(self) -> bool:
        """True when the job completed."""
        return self.status is JobStatus.COMPLETED


@dataclass(frozen=True)
class JobProgress:
    """The last progress a running job reported."""

    current: float | None
    total: float | None
    message: str | None


@dataclass(frozen=True)
class WorkerInfo:
    """One worker (a slot that runs one job at a time) as the heartbeat registry last saw it."""

    id: str
    status: str
    jobs_completed: int
    jobs_failed: int
    uptime: float
    healthy: bool
    pool: str = ""
    host: str = ""
    pid: int = 0
    current_job: str | None = None
    last_heartbeat: float = 0.0
    loop_lag: float = 0.0


@dataclass(frozen=True)
class LimitInfo:
    """A limit key's limit and what it holds now, summed over the partitions: `rate` as set
    ("100/s"), `held_back` says what keeps its waiting jobs from starting ("concurrency",
    "rate", or None when nothing does)."""

    key: str
    concurrency: int | None
    rate: str | None
    running: int
    waiting: int
    held_back: str | None = None
