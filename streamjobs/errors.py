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
