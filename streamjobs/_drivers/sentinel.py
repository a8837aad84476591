"""`redis+sentinel://` URLs: the primary of a Sentinel-watched service, found through the
sentinels and found again after a failover.

    redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?options]

The hosts are sentinels (port 26379 when left out); `user:password` and `db` are for the
data nodes (primary and replicas). Options: `sentinel_username` / `sentinel_password` (the
sentinels' own credentials, when they require any), `socket_timeout` and
`socket_connect_timeout` (seconds). TLS through sentinels is not offered yet.

The clients that follow a failover are the well-kept ones: redis-py's Sentinel under asyncio
and in threads, coredis' under trio. Each makes new connections to the address the sentinels
name now; a connection still held by a demoted primary answers READONLY, which drops it (see
the drivers), so the next command goes to the new primary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from ..errors import ConfigurationError

SCHEME = "redis+sentinel://"
DEFAULT_PORT = 26379
#: Longest wait for one sentinel's answer before the next is asked (seconds).
SENTINEL_TIMEOUT = 2.0
#: How often a busy client asks the sentinels which node is primary (seconds). A manual
#: failover (SENTINEL FAILOVER) leaves the old primary up and writable for seconds, until
#: the sentinels demote it; a client asking only when it reconnects would write there all
#: along, and lose it. Asked on the way to a connection, at most this often, and never
#: while idle.
RECHECK = 0.5
_OPTIONS = ("sentinel_username", "sentinel_password", "socket_timeout", "socket_connect_timeout")
_FORM = "redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db]"


def is_sentinel(url: str) -> bool:
    """Whether the URL names a service behind sentinels."""
    return url[:17].lower() == SCHEME or url[:18].lower() == "rediss+sentinel://"


@dataclass(frozen=True)
class SentinelURL:
    """A parsed `redis+sentinel://` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    timeouts: dict[str, float] = field(default_factory=dict)

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Connection settings for the sentinels themselves: a sentinel that does not answer
        within SENTINEL_TIMEOUT seconds is skipped for the next."""
        auth = {"username": self.sentinel_username, "password": self.sentinel_password}
        timeouts = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
        return {**{k: v for k, v in auth.items() if v is not None}, **timeouts, **self.timeouts}

    def node_kwargs(self) -> dict[str, Any]:
        """Connection settings for the data nodes (credentials and db; timeouts are each
        driver's own unless the URL sets them)."""
        auth = {"username": self.username, "password": self.password}
        return {**{k: v for k, v in auth.items() if v is not None}, "db": self.db}


def _bad(what: str) -> ConfigurationError:
    return ConfigurationError(f"invalid sentinel URL: {what} (expected {_FORM})")


def _address(part: str) -> tuple[str, int]:
    """One `host[:port]` (IPv6 in brackets)."""
    host, port = part, ""
    if part.startswith("["):
        host, _, rest = part[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif ":" in part:
        host, _, port = part.rpartition(":")
    if not host:
        raise _bad(f"sentinel {part!r} has no host")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(f"sentinel {part!r} has no valid port")
    return host, int(port)


def parse(url: str) -> SentinelURL:
    """The URL's parts; ConfigurationError names what is wrong (never the password)."""
    if url[:18].lower() == "rediss+sentinel://":
        raise ConfigurationError("TLS through sentinels (rediss+sentinel://) is not supported")
    if not is_sentinel(url):
        raise _bad("it does not start with redis+sentinel://")
    rest, _, query = url[len(SCHEME) :].partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinels = tuple(_address(part) for part in hosts.split(",") if part.strip())
    if not sentinels:
        raise _bad("it names no sentinel host")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise _bad("it names no service (the name the sentinels monitor)")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise _bad(f"the path {'/' + path!r} is not /service or /service/db")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise _bad(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    timeouts: dict[str, float] = {}
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in options:
            try:
                timeouts[name] = float(options[name])
            except ValueError:
                raise _bad(f"{name}={options[name]!r} is not a number of seconds") from None
    return SentinelURL(
        sentinels, unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0,
        unquote(user) or None, unquote(password) or None if userinfo else None,
        options.get("sentinel_username") or None, options.get("sentinel_password") or None,
        timeouts,
    )  # fmt: skip


def redact(url: str) -> str:
    """The URL with the data nodes' password masked (the sentinel_password too)."""
    rest = url[len(SCHEME) :] if is_sentinel(url) else url
    head, sep, query = rest.partition("?")
    netloc, slash, path = head.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    if "sentinel_password=" in query:
        query = "&".join(
            "sentinel_password=***" if q.startswith("sentinel_password=") else q
            for q in query.split("&")
        )
    return f"{url[: len(url) - len(rest)]}{userinfo}{at}{hosts}{slash}{path}{sep}{query}"


def redis_py_async(
    url: str, *, max_connections: int, socket_timeout: float, **options: Any
) -> tuple[Any, Any, Any]:
    """redis-py asyncio clients for the service's primary: (sentinel manager, a client whose
    pool holds at most `max_connections` and makes callers wait for one, a client for
    blocking reads). `options` are the driver's connection settings."""
    import time

    import redis.asyncio as aioredis
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

    class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
        """Sentinel's address lookup on a pool whose callers wait for a free connection;
        the primary's address asked again every RECHECK seconds, every connection dropped
        when it moved (in use too: they talk to a demoted primary)."""

        _checked_at = 0.0

        async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            now = time.monotonic()
            if now - self._checked_at >= RECHECK:
                self._checked_at = now
                before = self.master_address
                if before is not None and await self.get_master_address() != before:  # type: ignore[no-untyped-call]
                    await self.disconnect(inuse_connections=True)
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    parsed = parse(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=parsed.sentinel_kwargs(),
        **parsed.node_kwargs(), **options,
    )  # fmt: skip
    client = manager.master_for(
        parsed.service, redis_class=aioredis.Redis, connection_pool_class=BlockingSentinelPool,
        max_connections=max_connections, timeout=None,
        **{"socket_timeout": socket_timeout, **parsed.timeouts},
    )  # fmt: skip
    blocking = manager.master_for(
        parsed.service, redis_class=aioredis.Redis, connection_pool_class=BlockingSentinelPool,
        max_connections=2**31, timeout=None, socket_timeout=None,
    )  # fmt: skip
    return manager, client, blocking


def redis_py_sync(url: str, **options: Any) -> tuple[Any, Any]:
    """A redis-py (threaded) client for the service's primary, with its sentinel manager."""
    import time

    import redis
    from redis.sentinel import Sentinel, SentinelConnectionPool

    class FollowingPool(SentinelConnectionPool):
        """The primary's address asked again every RECHECK seconds (see RECHECK)."""

        _checked_at = 0.0

        def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            now = time.monotonic()
            if now - self._checked_at >= RECHECK:
                self._checked_at = now
                before = self.master_address
                if before is not None and self.proxy.get_master_address() != before:  # type: ignore[no-untyped-call]
                    self.disconnect(inuse_connections=True)
            return super().get_connection(*args, **kwargs)

    parsed = parse(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=parsed.sentinel_kwargs(),
        **parsed.node_kwargs(), **{**options, **parsed.timeouts},
    )  # fmt: skip
    client = manager.master_for(  # type: ignore[no-untyped-call]
        parsed.service, redis_class=redis.Redis, connection_pool_class=FollowingPool
    )
    return manager, client


def coredis_client(url: str, **options: Any) -> tuple[Any, Any]:
    """A coredis client for the service's primary, with its sentinel manager: enter the
    manager, then the client (both are anyio context managers)."""
    import time

    import coredis
    from coredis.connection import TCPLocation
    from coredis.pool import SentinelConnectionPool

    class FollowingPool(SentinelConnectionPool):
        """The primary's location asked again every RECHECK seconds; coredis drops every
        connection when it moved (see RECHECK)."""

        _checked_at = 0.0

        async def get_connection(self, **kwargs: Any) -> Any:
            now = time.monotonic()
            if self.location is not None and now - self._checked_at >= RECHECK:
                self._checked_at = now
                await self.get_primary_location()
            return await super().get_connection(**kwargs)

    parsed = parse(url)
    kwargs = dict(parsed.sentinel_kwargs())
    if "socket_timeout" in kwargs:
        kwargs["stream_timeout"] = kwargs.pop("socket_timeout")
    if "socket_connect_timeout" in kwargs:
        kwargs["connect_timeout"] = kwargs.pop("socket_connect_timeout")
    manager = coredis.Sentinel(
        [TCPLocation(host, port) for host, port in parsed.sentinels], sentinel_kwargs=kwargs,
        decode_responses=True, **parsed.node_kwargs(), **options,
    )  # fmt: skip
    return manager, manager.primary_for(parsed.service, connection_pool_class=FollowingPool)
