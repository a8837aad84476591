"""Driver for a Redis Cluster under trio (or asyncio when `driver="coredis"`), on coredis'
`RedisCluster`: anyio-native, with the same lifetime rule as `CoredisDriver` (its connections
live in a task group entered by the first command and left by `aclose()`, in one task).

The client keeps the map of slots to nodes and follows MOVED and ASK. Its retries are off: a
call whose reply was lost is never sent twice here (see `CoredisDriver`). NOSCRIPT (a replica
promoted since the script was loaded) is answered by running the call as EVAL with the
source, which the owning node caches. `eval_many` sends its calls concurrently, not in
coredis' cluster pipeline: that pipeline sends a call again after its connection failed,
when the call may have run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import coredis
from coredis import exceptions as cex
from coredis.connection import TCPLocation
from coredis.retry import NoRetryPolicy
from redis.connection import parse_url

from .._scripts import Script
from ..errors import RedisNotReadyError, RedisUnavailableError, StreamJobsError
from ._errors import translate
from ._pipeline import ReplyLost
from ._tls import tls_context
from .coredis_driver import CoredisDriver

#: Connections per node; blocking reads (a pool's pops, callers waiting for results) hold one.
MAX_CONNECTIONS_PER_NODE = 64


class CoredisClusterDriver(CoredisDriver):
    """Carries streamjobs' commands to a Redis Cluster over coredis; every key of a call
    shares one hash tag, so each call goes to one node."""

    name = "coredis cluster"

    def __init__(self, url: str) -> None:
        # Built from the parsed URL, as coredis' own from_url would, minus its deprecated form
        # of startup nodes; credentials and TLS apply to every node it finds.
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        tls: dict[str, Any] = {}
        if url.startswith("rediss://"):
            tls["ssl_context"] = tls_context(options)
        self._client = coredis.RedisCluster(
            startup_nodes=[TCPLocation(options.get("host") or "localhost",
                                       int(options.get("port") or 6379))],
            username=options.get("username"), password=options.get("password"),
            decode_responses=True, retry_policy=NoRetryPolicy(),
            max_connections=MAX_CONNECTIONS_PER_NODE, max_connections_per_node=True, **tls,
        )  # fmt: skip
        self._wait = None  # WAIT is refused on a cluster (see `open_driver`)
        self._contexts = [self._client]
        self._stack: AsyncExitStack | None = None
        self._opening = anyio.Lock()
        self.primaries = 0

    @property
    def topology(self) -> str:
        """What the queue runs on, for people: "Redis Cluster (3 primaries)"."""
        return f"Redis Cluster ({self.primaries} primaries)"

    @asynccontextmanager
    async def _command(
        self, block: float = 0.0
    ) -> AsyncIterator[coredis.Redis[str] | coredis.RedisCluster[str]]:
        """As `CoredisDriver._command`; a node that cannot be reached is reported to the
        client's map of the slots, which it rebuilds after two such errors. coredis reports
        lost connections itself, but not a connection refused (a dead primary), and the map
        would point at the dead node forever."""
        try:
            async with super()._command(block) as client:
                yield client
        except RedisUnavailableError as exc:
            if not isinstance(exc, RedisNotReadyError):
                layout = getattr(self._client.connection_pool, "cluster_layout", None)
                if layout is not None:
                    layout.report_errors(None, cex.ConnectionError(str(exc)))
            raise

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        async with self._command() as client:
            try:
                return await client.evalsha(script.sha, keys, args)
            except cex.NoScriptError:  # this node never saw it: EVAL runs it and caches it
                return await client.eval(script.source, keys, args)

    async def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Every call at once, each with its own outcome (see `Driver.eval_many`): a call
        whose connection failed is a `ReplyLost`, one Redis refused is its error."""
        outcomes: list[Any] = [None] * len(calls)

        async def one(i: int) -> None:
            try:
                outcomes[i] = await self.eval(script, keys, calls[i])
            except RedisNotReadyError as exc:  # refused (CLUSTERDOWN, TRYAGAIN): it did not run
                outcomes[i] = exc
            except RedisUnavailableError as exc:  # it may have gone out before the failure
                outcomes[i] = ReplyLost(exc)
            except StreamJobsError as exc:
                outcomes[i] = exc

        await self._open()  # in this task: coredis' task group is not for the ones below
        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(one, i)
        return outcomes

    async def wait_list_then_eval(
        self, key: str, timeout: float, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """BLPOP, then the script: two round trips (coredis routes a pipeline's commands by
        slot, with no order between a blocking pop and the call after it)."""
        await self.wait_list(key, timeout)
        return await self.eval(script, keys, args)

    async def _per_primary(self, command: str, *args: Any) -> list[Any]:
        """`command`'s reply from every primary that answers, each asked on a connection of
        its own (coredis routes neither INFO nor CONFIG GET by node); at connect only. A
        primary that fails (one just died, its replica not yet elected) is skipped; when none
        answers, the first one's error is raised."""
        replies, errors = [], []
        async with self._command() as cluster:
            assert isinstance(cluster, coredis.RedisCluster)
            for node in list(cluster.primaries):
                try:
                    async with node:  # its errors come wrapped in its task group's
                        replies.append(await getattr(node, command)(*args))
                except Exception as exc:  # any failure of one node skips it
                    errors.append(_leaf(exc))
        self.primaries = len(replies) + len(errors)
        if not replies:
            error = errors[0] if errors else cex.ConnectionError("the cluster has no primary")
            if isinstance(error, cex.RedisError):
                raise translate(error) from error
            raise RedisUnavailableError(f"no primary of the cluster answered: {error}")
        return replies

    async def server_version(self) -> tuple[int, ...]:
        """The oldest primary's version: every primary must run the scripts."""
        infos = await self._per_primary("info", "server")
        return min(tuple(int(p) for p in str(i["redis_version"]).split(".")[:3]) for i in infos)

    async def config_get(self, parameter: str) -> str | None:
        """The setting as the primaries have it (one that differs from the first primary's
        wins: a warning about one primary's eviction policy is still due)."""
        found = await self._per_primary("config_get", [parameter])
        values = [str(f[parameter]) for f in found if parameter in f]
        return next((v for v in values if v != values[0]), values[0]) if values else None

    async def info(self, section: str) -> dict[str, str]:
        """One INFO section of the first primary."""
        [first, *_] = await self._per_primary("info", section)
        return {name: str(value) for name, value in first.items()}

    async def aclose(self) -> None:
        await super().aclose()
        # coredis 6.9's map of the slots never closes the stream its nodes' errors go to: it
        # would warn (ResourceWarning) whenever collected. Closed here, where nothing uses it.
        layout = getattr(self._client.connection_pool, "cluster_layout", None)
        for stream in getattr(layout, "_error_stream", ()):
            stream.close()


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups, or `exc` itself."""
    while isinstance(inner := getattr(exc, "exceptions", None), (list, tuple)) and inner:
        exc = inner[0]
    return exc
