"""The streamjobs exception family: every error the library raises is a `StreamJobsError`."""

from __future__ import annotations

from typing import Any


class StreamJobsError(Exception):
    """Base class of every error raised by streamjobs."""


class InvalidJobError(StreamJobsError, ValueError):
    """A job was refused at submit, before anything was written; `field` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RedisUnavailableError(StreamJobsError, ConnectionError):
    """Redis could not be reached (refused, dropped or timed out)."""


class RedisNotReadyError(RedisUnavailableError):
    """Redis answered but cannot serve the command yet (READONLY, MASTERDOWN, LOADING, TRYAGAIN,
    BUSY: a failover, a replica resyncing, a restart loading its data); retrying later works."""


class RedisAuthError(StreamJobsError, PermissionError):
    """Redis refused the credentials or the command (NOAUTH, WRONGPASS, NOPERM): the URL's user
    and password, or that user's ACL, need fixing."""


class RedisVersionError(StreamJobsError):
    """The Redis server is older than the 6.2 that streamjobs needs (XAUTOCLAIM, XPENDING IDLE)."""


class QueueFullError(StreamJobsError):
    """Redis refused the write because it is out of memory (maxmemory with noeviction)."""


class ConfigurationError(StreamJobsError):
    """The library was set up or called in a way that cannot work; the message says what to do."""


class JobFailed(StreamJobsError):
    """Raised by a handler for a deliberate, permanent failure: FAILED, never retried."""


class JobCancelled(StreamJobsError):
    """Raised inside a running job cancelled by `cancel_job`: a plain `def` handler (run in a
    thread, which cannot be interrupted) gets it from its next `progress_callback` call and
    should let it propagate. The job has already ended CANCELLED; what the handler returns or
    raises after it is not recorded."""


class JobNotFoundError(StreamJobsError, LookupError):
    """No record exists for the job id: it was never submitted, or its result expired."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id!r} not found: it was never submitted, or its result expired"
        )
        self.job_id = job_id


class PartialSubmitError(StreamJobsError):
    """A bulk submit failed part way: some chunks of jobs were written (or may have been:
    the connection failed before their replies came), others not.

    `ids`: every job's id, in the order the jobs were given (generated ones included);
    `written`: ids whose jobs are in Redis (enqueued by this call, or already there under
    that id); `not_written`: ids Redis refused; `unknown`: ids whose reply was lost with the
    connection (written or not). Submitting the same jobs again with the same ids is safe,
    as an id that has a record enqueues nothing:
    `submit_many([{**job, "job_id": i} for job, i in zip(jobs, error.ids)])`.
    The error that stopped the rest is the cause.
    """

    def __init__(
        self, ids: list[str], written: list[str], not_written: list[str], unknown: list[str],
        cause: Exception,
    ) -> None:  # fmt: skip
        lost = f", {len(unknown)} unknown (the connection failed)" if unknown else ""
        super().__init__(
            f"submit_many wrote {len(written)} job(s); {len(not_written)} not written{lost} "
            f"({type(cause).__name__}); the ids are on this error: submit again with the "
            "same job ids to finish, which enqueues nothing twice"
        )
        self.ids, self.written, self.not_written, self.unknown = ids, written, not_written, unknown


class ReplicationError(StreamJobsError):
    """Fewer replicas than `wait_replicas` acknowledged a change within the WAIT timeout: the
    change IS on the primary (it ran, and stands), but a failover before it reaches a replica
    may lose it. `acknowledged` of `wanted` replicas answered; `job_ids` names the jobs a
    submit wrote (they exist, and submitting again with the same ids enqueues nothing twice).
    """

    def __init__(
        self, acknowledged: int, wanted: int, timeout_ms: int, job_ids: list[str] | None = None,
        *, reply: Any = None,
    ) -> None:  # fmt: skip
        jobs = ""
        if job_ids:
            shown = ", ".join(job_ids[:3]) + (", ..." if len(job_ids) > 3 else "")
            jobs = (
                f" (job(s) {shown} were written: submitting again with the same job ids "
                "enqueues nothing twice)"
            )
        super().__init__(
            f"only {acknowledged} of {wanted} replica(s) acknowledged the change within "
            f"{timeout_ms} ms: it is on the primary but may be lost in a failover{jobs}"
        )
        self.acknowledged, self.wanted, self.timeout_ms = acknowledged, wanted, timeout_ms
        self.job_ids = list(job_ids or [])
        #: What the change returned on the primary (the script's reply).
        self.reply = reply

    def for_jobs(self, job_ids: list[str]) -> ReplicationError:
        """The same shortfall, naming the jobs a submit wrote."""
        return ReplicationError(
            self.acknowledged, self.wanted, self.timeout_ms, job_ids, reply=self.reply
        )
