"""The reads both redis-py drivers make alike, on one node or through a cluster client."""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Any

from redis import exceptions as rex

Entry = tuple[str, dict[str, str]]


class RedisPyReads:
    """Stream ranges, hash reads and group creation over `_client`; each driver names, by
    `_guarded`, how its calls are bounded in time and their errors translated."""

    _client: Any

    def _guarded(self) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def stream_range(self, key: str, count: int, *, reverse: bool) -> list[Entry]:
        async with self._guarded():
            if reverse:
                entries: Any = await self._client.xrevrange(key, count=count)
            else:
                entries = await self._client.xrange(key, count=count)
        return list(entries)

    async def hget(self, key: str, field: str) -> str | None:
        async with self._guarded():
            value: Any = await self._client.hget(key, field)
            return None if value is None else str(value)

    async def hgetall(self, key: str) -> dict[str, str]:
        async with self._guarded():
            record: Any = await self._client.hgetall(key)
            return dict(record)

    async def create_group(self, stream: str, group: str) -> None:
        async with self._guarded():
            with contextlib.suppress(rex.ResponseError):  # no such key yet
                groups: Any = await self._client.xinfo_groups(stream)
                if any(g["name"] == group for g in groups):
                    return  # asked first: a full Redis refuses XGROUP CREATE even when it exists
            try:
                await self._client.xgroup_create(stream, group, id="0", mkstream=True)
            except rex.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
