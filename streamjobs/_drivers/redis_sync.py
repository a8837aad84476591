"""Blocking driver on redis-py's sync client: for threads (lease renewal, sync apps).

redis-py's connection pool is thread-safe: any number of threads may share one driver; each
command (or pipeline) borrows a connection for its own round trip. A URL of a Redis Cluster
node gets redis-py's `RedisCluster` (one pool per node; MOVED and ASK followed, nothing that
may have run sent twice), and a script a node does not know runs as EVAL with its source.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._scripts import Script
from ..errors import ConfigurationError, RedisAuthError, StreamJobsError
from ._errors import lost_replies, translate
from ._pipeline import ReloadingCalls
from ._replicas import CLUSTER_WAIT, READ_ONLY, Wait, check_written
from .sentinel import is_sentinel

Entry = tuple[str, dict[str, str]]


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (rex.RedisError, rex.RedisClusterException) as exc:
        raise translate(exc) from exc


def is_cluster(url: str) -> bool:
    """Whether `url` names a node of a Redis Cluster (`INFO server`, one round trip; a
    server that refuses INFO is taken for a single one)."""
    if url.startswith("unix://"):
        return False
    try:
        with (
            _translated(),
            redis.Redis.from_url(url, decode_responses=True, socket_timeout=10) as r,
        ):
            info: Any = r.info("server")
    except RedisAuthError:
        return False
    return bool(info.get("redis_mode") == "cluster")


class SyncDriver:
    """Carries streamjobs' commands over a thread-safe redis-py connection pool."""

    def __init__(self, url: str, wait: Wait | None = None, *, cluster: bool | None = None) -> None:
        """`cluster`: whether `url` names a node of a Redis Cluster; None asks the server on
        the first command (nothing connects before)."""
        self._url, self._wait = url, wait
        self.cluster = False if is_sentinel(url) else cluster
        self._sentinel: Any = None
        self._built: Any = None
        self._building = threading.Lock()

    @property
    def _client(self) -> Any:
        """redis-py's client for the URL: `RedisCluster` on a cluster, else `Redis` (through
        the sentinels for a `redis+sentinel://` URL)."""
        if self._built is None:
            with self._building:
                if self._built is None:
                    self._built = self._build()
        return self._built

    def _build(self) -> Any:
        options: dict[str, Any] = {
            "decode_responses": True, "encoding_errors": "replace", "socket_timeout": 10,
        }  # fmt: skip
        if is_sentinel(self._url):
            from .sentinel import redis_py_sync

            self._sentinel, client = redis_py_sync(self._url, **options)
            return client
        if self.cluster is None:
            self.cluster = is_cluster(self._url)
        if self.cluster:  # no retries: a script whose reply was lost is not sent again
            if self._wait is not None:
                raise ConfigurationError(CLUSTER_WAIT)
            return redis.RedisCluster.from_url(self._url, retry=Retry(NoBackoff(), 0), **options)
        return redis.Redis.from_url(self._url, **options)

    def _source(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script the server did not know: load it, or on a cluster run it as EVAL
        (which the node of the keys' slot caches: SCRIPT LOAD would go to every primary)."""
        if self.cluster:
            return self._client.execute_command("EVAL", script.source, len(keys), *keys, *args)
        self._client.script_load(script.source)
        return self._client.evalsha(script.sha, len(keys), *keys, *args)

    def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by SHA, loading it once if the server does not know it; with
        `wait`, WAIT follows it on the same connection (see `_replicas`)."""
        if self._wait is not None and script.name not in READ_ONLY:
            return self._eval_waiting(self._wait, script, keys, args)
        with _translated():
            try:
                return self._client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                return self._source(script, keys, args)

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
        command = ["EVALSHA", script.sha]
        wait, acknowledged = self._wait, None
        while books.todo:
            try:
                with _translated(), self._client.pipeline(transaction=False) as pipe:
                    for i in books.todo:
                        pipe.execute_command(*command, len(keys), *keys, *calls[i])
                    if wait is not None:
                        pipe.wait(wait.replicas, wait.timeout_ms)
                        *replies, acknowledged = pipe.execute(raise_on_error=False)
                    else:
                        replies = pipe.execute(raise_on_error=False)
                if self.cluster:  # see `lost_replies`
                    replies = lost_replies(replies)
            except StreamJobsError as exc:  # redis-py cannot tell which replies came
                books.lose(exc)
                break
            if not books.record(replies):
                break
            if self.cluster:  # the refused calls go again with the source (see `_source`)
                command = ["EVAL", script.source]
                continue
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
                return list(self._client.xrevrange(key, count=count))
            return list(self._client.xrange(key, count=count))

    def hget(self, key: str, field: str) -> str | None:
        """One field of a hash."""
        with _translated():
            value: str | None = self._client.hget(key, field)
            return value

    def hgetall(self, key: str) -> dict[str, str]:
        """A whole hash ({} when missing)."""
        with _translated():
            return dict(self._client.hgetall(key))

    def close(self) -> None:
        """Close every connection of the pool (and of the sentinels, if any)."""
        if self._built is not None:
            self._built.close()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                sentinel.close()
