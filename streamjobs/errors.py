"""The streamjobs exception family: every error the library raises is a `StreamJobsError`."""

from __future__ import annotations


class StreamJobsError(Exception):
    """Base class of every error raised by streamjobs."""


class InvalidJobError(StreamJobsError, ValueError):
    """A job was refused at submit, before anything was written; `field` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RedisUnavailableError(StreamJobsError, ConnectionError):
    """Redis could not be reached (refused, dropped or timed out)."""


class RedisVersionError(StreamJobsError):
    """The Redis server is older than the 6.2 that streamjobs needs (XAUTOCLAIM, XPENDING IDLE)."""


class QueueFullError(StreamJobsError):
    """Redis refused the write because it is out of memory (maxmemory with noeviction)."""


class ConfigurationError(StreamJobsError):
    """The library was set up or called in a way that cannot work; the message says what to do."""


class JobFailed(StreamJobsError):
    """Raised by a handler for a deliberate, permanent failure: FAILED, never retried."""


class JobNotFoundError(StreamJobsError, LookupError):
    """No record exists for the job id: it was never submitted, or its result expired."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id!r} not found: it was never submitted, or its result expired"
        )
        self.job_id = job_id


class PartialSubmitError(StreamJobsError):
    """A bulk submit failed part way: some chunks of jobs were written, others not.

    `written`: ids whose jobs are in Redis (enqueued by this call, or already there under
    that id); `not_written`: ids Redis refused; `unknown`: ids whose reply was lost with the
    connection (written or not). Submitting the same jobs again with the same ids is safe:
    an id that has a record enqueues nothing. The error that stopped the rest is the cause.
    """

    def __init__(
        self, written: list[str], not_written: list[str], unknown: list[str], cause: Exception
    ) -> None:
        super().__init__(
            f"submit_many wrote {len(written)} job(s) and not {len(not_written)}"
            + (f" ({len(unknown)} unknown: the connection failed)" if unknown else "")
            + f"; submit again with the same job ids to finish safely ({cause})"
        )
        self.written, self.not_written, self.unknown = written, not_written, unknown
