"""The driver seam: the only place that imports a Redis client.

A driver carries commands; it knows nothing of jobs. Everything above it speaks to Redis through
`Driver`, and client exceptions are translated here into the streamjobs family.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .._scripts import Script
from ..errors import ConfigurationError, RedisAuthError
from ._replicas import CLUSTER_WAIT, Wait
from .sentinel import is_sentinel

Entry = tuple[str, dict[str, str]]

#: Longest wait for the reply to a command that does not block (seconds); a blocking command
#: gets its block time on top.
COMMAND_DEADLINE = 15.0


class Driver(Protocol):
    """What the queue needs from an async Redis client."""

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by SHA, loading it once if the server does not know it."""

    async def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Run a script once per argument list, pipelined in one round trip. Never raises for
        Redis or the connection: each call's outcome is in its place, its reply, the
        StreamJobsError Redis answered it with (it did not run), or a `ReplyLost` (see
        `_pipeline`) where the connection failed before its reply came back."""

    async def wait_list_then_eval(
        self, key: str, timeout: float, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """BLPOP `key` up to `timeout` seconds, then run the script whether or not an item was
        popped; where the client allows, both go out in one write, so the script runs the
        moment the pop returns."""

    async def wait_list(self, key: str, timeout: float) -> bool:
        """Block in BLPOP up to `timeout` seconds; True when an item was popped."""

    async def pop_list(self, key: str, timeout: float) -> str | None:
        """Block in BLPOP up to `timeout` seconds; the item popped, or None."""

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

    async def config_get(self, parameter: str) -> str | None:
        """One server setting by CONFIG GET (None when unknown); managed Redis may refuse."""

    async def info(self, section: str) -> dict[str, str]:
        """One INFO section as text fields (`maxmemory_policy`, `redis_version`, ...)."""

    async def aclose(self) -> None:
        """Close every connection."""


#: The async drivers by name; `None` picks by event loop (see `connect`).
DRIVERS = ("resp", "redis-py", "coredis")
_TRIO_EXTRA = "pip install 'streamjobs[trio]'"


def running_library() -> str | None:
    """The running event loop's library: "asyncio", "trio", or None outside one."""
    try:
        import sniffio
    except ImportError:  # anyio >= 4.12 runs without it; trio always brings it
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return "asyncio"
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


@contextmanager
def library_pinned() -> Iterator[None]:
    """Name the running event loop once for the tasks started inside (sniffio's context
    variable). Under plain `asyncio.run` every anyio call otherwise finds the library by
    asking asyncio for the current task, a cost a busy worker pays many times per job."""
    try:
        import sniffio
    except ImportError:  # anyio then asks asyncio for the running loop, which is cheap
        yield
        return
    token = sniffio.current_async_library_cvar.set(running_library())
    try:
        yield
    finally:
        sniffio.current_async_library_cvar.reset(token)


def connect(url: str, name: str | None = None, wait: Wait | None = None) -> Driver:
    """The async driver named `name`, or the one for the running event loop: our own RESP
    connection under asyncio (the fastest), coredis under trio. Every driver takes `redis://`,
    `rediss://` (TLS, `ssl_*` query options) and `unix://` URLs; `redis+sentinel://` goes to
    redis-py under asyncio (see `sentinel`). `wait`: WAIT after every script (see
    `_replicas`). The driver connects lazily."""
    library = running_library()
    if name is None:
        name = "coredis" if library == "trio" else "resp"
        if is_sentinel(url) and name == "resp":
            name = "redis-py"
    if name == "coredis":
        return _coredis(url, wait)
    if name in ("resp", "redis-py"):
        if library == "trio":
            raise ConfigurationError(
                f"driver={name!r} runs on asyncio only; under trio use driver='coredis' "
                f"(or leave driver unset), from the trio extra: {_TRIO_EXTRA}"
            )
        if name == "resp":
            if is_sentinel(url):
                raise ConfigurationError(
                    "driver='resp' does not follow sentinels: a redis+sentinel:// URL needs "
                    "driver='redis-py' (asyncio) or 'coredis' (asyncio or trio), or no driver"
                )
            from .resp import RespDriver

            return RespDriver(url, wait)
        from .redis_py import RedisPyDriver

        return RedisPyDriver(url, wait)
    raise ConfigurationError(f"driver={name!r} is not one of {', '.join(DRIVERS)} (or None)")


async def open_driver(url: str, name: str | None = None, wait: Wait | None = None) -> Driver:
    """The driver for `url`, asking the server once whether it is a node of a Redis Cluster
    (`INFO server`'s `redis_mode`: the section managed Redis allows where it refuses others).

    A single server gets `connect(url, name)`'s driver, the probe's connection kept for what
    follows. Any node of a cluster gets a cluster client, which learns every node from it:
    redis-py's under asyncio (for `name` None, "resp" or "redis-py"), coredis' under trio or
    for "coredis". A cluster client rather than an error for "resp": it follows MOVED and ASK
    and rebuilds its map of the slots after a failover, which our RESP connection does not,
    and one setting (a CLI's `--driver`) then serves a single Redis and a cluster alike. The
    URL's username, password and TLS options apply to every node. `wait` (WAIT after every
    script) is refused on a cluster with a ConfigurationError, for now."""
    driver = connect(url, name, wait)
    if url.startswith("unix://") or is_sentinel(url):
        return driver  # a socket path is one server; sentinels watch primaries, not a cluster
    try:
        clustered = (await driver.info("server")).get("redis_mode") == "cluster"
    except RedisAuthError:  # INFO refused: a server that hides this much is served as one
        clustered = False
    except BaseException:
        await driver.aclose()
        raise
    if not clustered:
        return driver
    await driver.aclose()
    if wait is not None:
        raise ConfigurationError(CLUSTER_WAIT)
    if running_library() == "trio" or name == "coredis":
        from .cluster_coredis import CoredisClusterDriver

        return CoredisClusterDriver(url)
    from .cluster_redis_py import RedisPyClusterDriver

    return RedisPyClusterDriver(url)


def _coredis(url: str, wait: Wait | None) -> Driver:
    try:
        from .coredis_driver import CoredisDriver
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith(("coredis", "trio")):
            raise
        raise ConfigurationError(
            f"the coredis driver (used under trio) needs the trio extra: {_TRIO_EXTRA}"
        ) from exc
    return CoredisDriver(url, wait)
