"""Blocking driver on redis-py's sync client: for threads (lease renewal, sync apps).

redis-py's connection pool is thread-safe: any number of threads may share one driver; each
command (or pipeline) borrows a connection for its own round trip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis import exceptions as rex

from .._scripts import Script
from ..errors import StreamJobsError
from ._errors import translate
from ._pipeline import ReloadingCalls
from ._replicas import READ_ONLY, Wait, check_written
from .sentinel import is_sentinel

Entry = tuple[str, dict[str, str]]


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except rex.RedisError as exc:
        raise translate(exc) from exc


class SyncDriver:
    """Carries streamjobs' commands over a thread-safe redis-py connection pool."""

    def __init__(self, url: str, wait: Wait | None = None) -> None:
        self._wait = wait
        self._sentinel: Any = None
        self._client: redis.Redis
        options: dict[str, Any] = {
            "decode_responses": True, "encoding_errors": "replace", "socket_timeout": 10,
        }  # fmt: skip
        if is_sentinel(url):
            from .sentinel import redis_py_sync

            self._sentinel, self._client = redis_py_sync(url, **options)
        else:
            self._client = redis.Redis.from_url(url, **options)

    def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by SHA, loading it once if the server does not know it; with
        `wait`, WAIT follows it on the same connection (see `_replicas`)."""
        if self._wait is not None and script.name not in READ_ONLY:
            return self._eval_waiting(self._wait, script, keys, args)
        with _translated():
            try:
                return self._client.evalsha(script.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                self._client.script_load(script.source)
                return self._client.evalsha(script.sha, len(keys), *keys, *args)

    def _eval_waiting(
        self, wait: Wait, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """The script then WAIT, in one write on one connection (again after NOSCRIPT)."""
        for _ in range(2):
            with _translated(), self._client.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.wait(wait.replicas, wait.timeout_ms)
                reply, acknowledged = pipe.execute(raise_on_error=False)
            if not isinstance(reply, rex.NoScriptError):
                break
            with _translated():
                self._client.script_load(script.source)
        if isinstance(reply, Exception):
            raise translate(reply) from reply
        return wait.check(acknowledged, reply)

    def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Run a script once per argument list, pipelined in one round trip; calls refused
        with NOSCRIPT (they did not run) run again once the script is loaded. Each call's
        outcome in its place, as the async drivers give it (see `Driver.eval_many`)."""
        books = ReloadingCalls(len(calls), rex.NoScriptError)
        wait, acknowledged = self._wait, None
        while books.todo:
            try:
                with _translated(), self._client.pipeline(transaction=False) as pipe:
                    for i in books.todo:
                        pipe.evalsha(script.sha, len(keys), *keys, *calls[i])
                    if wait is not None:
                        pipe.wait(wait.replicas, wait.timeout_ms)
                        *replies, acknowledged = pipe.execute(raise_on_error=False)
                    else:
                        replies = pipe.execute(raise_on_error=False)
            except StreamJobsError as exc:  # redis-py cannot tell which replies came
                books.lose(exc)
                break
            if not books.record(replies):
                break
            try:
                with _translated():
                    self._client.script_load(script.source)
            except StreamJobsError as exc:
                books.refuse(exc)
        outcomes = books.outcomes(translate)
        if wait is not None and acknowledged is not None:
            check_written(wait, acknowledged, outcomes)
        return outcomes

    def read_stream(self, key: str, last_id: str, count: int, block_ms: int | None) -> list[Entry]:
        """XREAD entries after `last_id` (blocking up to block_ms when given)."""
        with _translated():
            reply: Any = self._client.xread({key: last_id}, count=count, block=block_ms)
        return [(entry, fields) for _, entries in reply or [] for entry, fields in entries]

    def stream_range(self, key: str, count: int, *, reverse: bool) -> list[Entry]:
        """XRANGE / XREVRANGE over a whole stream, up to `count` entries."""
        with _translated():
            if reverse:
                return list(self._client.xrevrange(key, count=count))  # type: ignore[arg-type]
            return list(self._client.xrange(key, count=count))  # type: ignore[arg-type]

    def hget(self, key: str, field: str) -> str | None:
        """One field of a hash."""
        with _translated():
            value: str | None = self._client.hget(key, field)  # type: ignore[assignment]
            return value

    def hgetall(self, key: str) -> dict[str, str]:
        """A whole hash ({} when missing)."""
        with _translated():
            return dict(self._client.hgetall(key))  # type: ignore[arg-type]

    def close(self) -> None:
        """Close every connection of the pool (and of the sentinels, if any)."""
        self._client.close()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                sentinel.close()
