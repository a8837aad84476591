"""Blocking driver on redis-py's sync client: for threads (lease renewal, sync apps)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis import exceptions as rex

from .._scripts import Script
from ._errors import translate


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except rex.RedisError as exc:
        raise translate(exc) from exc


class SyncDriver:
    """Carries streamjobs' commands over a thread-safe redis-py connection pool."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url, decode_responses=True, encoding_errors="replace", socket_timeout=10
        )

    def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with _translated():
            try:
                return self._client.evalsha(script.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                self._client.script_load(script.source)
                return self._client.evalsha(script.sha, len(keys), *keys, *args)

    def close(self) -> None:
        self._client.close()
