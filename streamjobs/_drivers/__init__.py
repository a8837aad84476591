"""The driver seam: the only place that imports a Redis client.

A driver carries commands; it knows nothing of jobs. Everything above it speaks to Redis through
`Driver`, and client exceptions are translated here into the streamjobs family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .._scripts import Script

Entry = tuple[str, dict[str, str]]


class Driver(Protocol):
    """What the queue needs from an async Redis client."""

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by SHA, loading it once if the server does not know it."""

    async def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Run a script once per argument list, pipelined in one round trip."""

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], count: int, block_ms: int
    ) -> list[tuple[str, str]]:
        """Block in XREADGROUP for new entries; returns (stream, entry id) pairs."""

    async def wait_list(self, key: str, timeout: float) -> bool:
        """Block in BLPOP up to `timeout` seconds; True when an item was popped."""

    async def read_stream(
        self, key: str, last_id: str, count: int, block_ms: int | None
    ) -> list[tuple[str, dict[str, str]]]:
        """XREAD entries after `last_id` (blocking up to block_ms when given)."""

    async def stream_range(self, key: str, count: int, *, reverse: bool) -> list[Entry]:
        """XRANGE / XREVRANGE over a whole stream, up to `count` entries."""

    async def hget(self, key: str, field: str) -> str | None:
        """One field of a hash."""

    async def hgetall(self, key: str) -> dict[str, str]:
        """A whole hash ({} when missing)."""

    async def create_group(self, stream: str, group: str) -> None:
        """Create a consumer group from the stream's start (and the stream); idempotent."""

    async def server_version(self) -> tuple[int, ...]:
        """The Redis server's version, e.g. (7, 0, 15)."""

    async def aclose(self) -> None:
        """Close every connection."""


def connect(url: str, name: str | None = None) -> Driver:
    """The async driver named (`"redis-py"`), or the one for the running event loop."""
    from .redis_py import RedisPyDriver

    return RedisPyDriver(url)
