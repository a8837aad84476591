"""Client exceptions become streamjobs exceptions here, and only here."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rex

from ..errors import (
    QueueFullError,
    RedisAuthError,
    RedisNotReadyError,
    RedisUnavailableError,
    StreamJobsError,
)
from ._pipeline import ReplyLost


class MissingGroupError(StreamJobsError):
    """A stream or its consumer group vanished (FLUSHALL, a restart without persistence)."""


#: Error codes of a server that cannot serve now but will (failover, resync, loading, a busy
#: script, a cluster slot moving), and of refused credentials or commands.
NOT_READY = frozenset({"READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN", "BUSY", "CLUSTERDOWN"})
REFUSED = frozenset({"NOAUTH", "WRONGPASS", "NOPERM"})

#: redis-py's classes for codes that its parser strips from the message.
_REDIS_PY_CODES: tuple[tuple[type[Exception], str], ...] = (
    (rex.ReadOnlyError, "READONLY"), (rex.MasterDownError, "MASTERDOWN"),
    (rex.BusyLoadingError, "LOADING"), (rex.TryAgainError, "TRYAGAIN"),
    (rex.AuthenticationError, "NOAUTH"), (rex.AuthorizationError, "NOPERM"),
    (rex.NoPermissionError, "NOPERM"),
    # A cluster mid-failover: slots uncovered, or redirections that never settled.
    (rex.ClusterDownError, "CLUSTERDOWN"), (rex.ClusterError, "CLUSTERDOWN"),
    (rex.SlotNotCoveredError, "CLUSTERDOWN"),
)  # fmt: skip
#: coredis' classes for the same codes (by name: coredis is an optional extra).
_COREDIS_CODES = (
    ("ReadOnlyError", "READONLY"), ("BusyLoadingError", "LOADING"),
    ("TryAgainError", "TRYAGAIN"), ("AuthenticationError", "NOAUTH"),
    ("AuthorizationError", "NOPERM"), ("ClusterDownError", "CLUSTERDOWN"),
    ("ClusterError", "CLUSTERDOWN"),
)  # fmt: skip


def _coredis(name: str) -> tuple[type[BaseException], ...]:
    """coredis' exception class `name`, or nothing when coredis was never imported (it is an
    optional extra, and none of its exceptions can exist before it is imported)."""
    module = sys.modules.get("coredis.exceptions")
    return (getattr(module, name),) if module is not None else ()


def error_code(exc: Exception) -> str:
    """The Redis error code behind a client error ("" when there is none): the first word of
    the reply, which redis-py and coredis strip for the codes they turn into a class. A
    script's error that Redis 6.2 wraps in ERR (`... -READONLY You can't ...`) is found inside."""
    status: object = getattr(exc, "status_code", None)  # redis-py keeps the stripped code
    if isinstance(status, str) and status and status != "ERR":
        return status
    for cls, code in _REDIS_PY_CODES:
        if isinstance(exc, cls):
            return code
    for name, code in _COREDIS_CODES:
        if isinstance(exc, _coredis(name)):
            return code
    text = str(exc)
    first = text.split(" ", 1)[0]
    if first.isupper() and first.isalpha() and first != "ERR":
        return first
    return next((code for code in sorted(NOT_READY | REFUSED) if f"-{code} " in text), first)


def _unreachable(exc: Exception) -> bool:
    """Connection refused, lost or timed out (`OSError` covers `TimeoutError`); no primary
    found behind the sentinels (yet: a failover under way); or a cluster client that reached
    no node at all (redis-py's `RedisClusterException`: "Redis Cluster cannot be connected",
    no node to send to while its map of the slots is rebuilt)."""
    return isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError,
                            rex.RedisClusterException, *_coredis("ConnectionError"),
                            *_coredis("SentinelError")))  # fmt: skip


def _with_tls_cause(exc: Exception, text: str) -> str:
    """The error's text, with the TLS failure behind it where a client hid it ("Unable to
    establish a connection"): a refused certificate should say so."""
    text = text or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLError) and str(cause) not in text:
        return f"{text}: {cause}"
    return text


def _missing_group(exc: Exception, text: str) -> bool:
    """NOGROUP: redis-py keeps the code in the message; coredis strips it into a type."""
    coredis_nogroup = _coredis("StreamConsumerGroupError")
    return "NOGROUP" in text or (
        isinstance(exc, coredis_nogroup)
        and not isinstance(exc, _coredis("StreamDuplicateConsumerGroupError"))
    )


def translate(exc: Exception) -> StreamJobsError:
    """The streamjobs error for a client error (redis-py's, coredis' or our own reply error).

    The error code decides where there is one (a failover's READONLY, an ACL's NOPERM), before
    the client's class: redis-py files LOADING and a refused password under ConnectionError.
    Then connection loss and timeouts by type, and the remaining codes by the message.
    """
    text, code = str(exc), error_code(exc)
    if code in REFUSED:
        return RedisAuthError(f"Redis refused the credentials or the command ({code}): {text}")
    if code in NOT_READY:
        return RedisNotReadyError(f"Redis is not ready ({code}): {text}")
    if _unreachable(exc):
        return RedisUnavailableError(f"Redis is unreachable: {_with_tls_cause(exc, text)}")
    if _missing_group(exc, text):
        return MissingGroupError(text)
    if "maxmemory" in text:  # "OOM command not allowed when used memory > 'maxmemory'"
        return QueueFullError(f"Redis is out of memory, nothing was written: {text}")
    return StreamJobsError(f"Redis error: {text}")


def lost_replies(replies: Sequence[Any]) -> list[Any]:
    """A cluster pipeline's replies, where a connection that failed while its replies were
    read is a `ReplyLost` (redis-py files the failure in each unread call's place, as if
    Redis had refused the call, when the call may have run)."""
    return [
        ReplyLost(translate(r)) if isinstance(r, (rex.ConnectionError, rex.TimeoutError)) else r
        for r in replies
    ]
