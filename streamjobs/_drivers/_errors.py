"""Client exceptions become streamjobs exceptions here, and only here."""

from __future__ import annotations

from redis import exceptions as rex

from ..errors import QueueFullError, RedisUnavailableError, StreamJobsError


class MissingGroupError(StreamJobsError):
    """A stream or its consumer group vanished (FLUSHALL, a restart without persistence)."""


def translate(exc: Exception) -> StreamJobsError:
    """The streamjobs error for a client error (redis-py's exceptions, by message)."""
    text = str(exc)
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError)):
        return RedisUnavailableError(f"Redis is unreachable: {text or type(exc).__name__}")
    if "NOGROUP" in text:
        return MissingGroupError(text)
    if text.startswith("OOM") or "OOM command not allowed" in text:
        return QueueFullError(f"Redis is out of memory, nothing was written: {text}")
    if "BUSY" in text.split(" ", 1)[0] or "LOADING" in text:
        return RedisUnavailableError(f"Redis is not ready: {text}")
    return StreamJobsError(f"Redis error: {text}")
