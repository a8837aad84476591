"""Client exceptions become streamjobs exceptions here, and only here."""

from __future__ import annotations

import sys

from redis import exceptions as rex

from ..errors import QueueFullError, RedisUnavailableError, StreamJobsError


class MissingGroupError(StreamJobsError):
    """A stream or its consumer group vanished (FLUSHALL, a restart without persistence)."""


def _coredis(name: str) -> tuple[type[BaseException], ...]:
    """coredis' exception class `name`, or nothing when coredis was never imported (it is an
    optional extra, and none of its exceptions can exist before it is imported)."""
    module = sys.modules.get("coredis.exceptions")
    return (getattr(module, name),) if module is not None else ()


def _unreachable(exc: Exception) -> bool:
    """Connection refused, lost or timed out (`OSError` covers `TimeoutError`); coredis files
    LOADING under its ConnectionError too."""
    return isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError,
                            *_coredis("ConnectionError")))  # fmt: skip


def _missing_group(exc: Exception, text: str) -> bool:
    """NOGROUP: redis-py keeps the code in the message; coredis strips it into a type."""
    coredis_nogroup = _coredis("StreamConsumerGroupError")
    return "NOGROUP" in text or (
        isinstance(exc, coredis_nogroup)
        and not isinstance(exc, _coredis("StreamDuplicateConsumerGroupError"))
    )


def translate(exc: Exception) -> StreamJobsError:
    """The streamjobs error for a client error (redis-py's or coredis').

    Both clients report server errors with Redis' own text (`NOGROUP ...`, `OOM ...`), so the
    message decides, except where coredis turns the code into a type; connection loss and
    timeouts by type.
    """
    text = str(exc)
    if _unreachable(exc):
        return RedisUnavailableError(f"Redis is unreachable: {text or type(exc).__name__}")
    if _missing_group(exc, text):
        return MissingGroupError(text)
    if "maxmemory" in text:  # "OOM command not allowed when used memory > 'maxmemory'"
        return QueueFullError(f"Redis is out of memory, nothing was written: {text}")
    if "BUSY" in text.split(" ", 1)[0] or "LOADING" in text:
        return RedisUnavailableError(f"Redis is not ready: {text}")
    return StreamJobsError(f"Redis error: {text}")
