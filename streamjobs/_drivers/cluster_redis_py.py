"""Driver for a Redis Cluster under asyncio, on redis-py's asyncio `RedisCluster`.

The client keeps the map of slots to nodes, follows MOVED and ASK, and rebuilds the map after
a node fails. It replays nothing that may have run: its retries after a lost connection are
off (a script whose reply was lost is the caller's to retry, as on every other driver), and a
failover reaches callers as RedisUnavailableError or RedisNotReadyError, which workers back
off on. A script unknown to a node (NOSCRIPT: a replica promoted since it was loaded) runs
again as EVAL with its source, which the owning node caches from then on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from redis import exceptions as rex
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .._scripts import Script
from ..errors import RedisUnavailableError
from . import COMMAND_DEADLINE
from ._errors import lost_replies, translate
from ._pipeline import ReloadingCalls
from ._redis_py_reads import RedisPyReads

Entry = tuple[str, dict[str, str]]


@asynccontextmanager
async def _translated(block: float = 0.0) -> AsyncIterator[None]:
    """Bound a command in time (`block` seconds on top for a blocking one) and turn client
    errors, cluster ones included, into streamjobs errors."""
    deadline = COMMAND_DEADLINE + block
    try:
        with anyio.fail_after(deadline):
            yield
    except (rex.RedisError, rex.RedisClusterException) as exc:
        raise translate(exc) from exc
    except TimeoutError:
        raise RedisUnavailableError(f"Redis did not answer within {deadline:g}s") from None


def _version(text: object) -> tuple[int, ...]:
    return tuple(int(part) for part in str(text).split(".")[:3])


class RedisPyClusterDriver(RedisPyReads):
    """Carries streamjobs' commands to a Redis Cluster over redis-py: one connection pool per
    node; every key of a call shares one hash tag, so each call goes to one node."""

    name = "redis-py cluster"

    def __init__(self, url: str) -> None:
        self._client = RedisCluster.from_url(
            url, decode_responses=True, encoding_errors="replace", socket_keepalive=True,
            retry=Retry(NoBackoff(), 0), socket_timeout=None,
        )  # fmt: skip
        self.primaries = 0

    @property
    def topology(self) -> str:
        """What the queue runs on, for people: "Redis Cluster (3 primaries)"."""
        return f"Redis Cluster ({self.primaries} primaries)"

    async def _evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        async with _translated():
            try:
                return await self._evalsha(script, keys, args)
            except rex.NoScriptError:  # this node never saw it: EVAL runs it and caches it
                return await self._client.execute_command(
                    "EVAL", script.source, len(keys), *keys, *args
                )

    async def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """One pipeline to the node of the keys' slot (redis-py resends only the calls that
        met MOVED, ASK or TRYAGAIN, which did not run); after NOSCRIPT the refused calls go
        again as EVAL with the source."""
        command = ["EVALSHA", script.sha]

        async def send(todo: Sequence[int]) -> list[Any]:
            async with _translated():  # on failure redis-py cannot tell which replies came
                pipe = self._client.pipeline(transaction=False)
                for i in todo:
                    pipe.execute_command(*command, len(keys), *keys, *calls[i])
                return lost_replies(await pipe.execute(raise_on_error=False))

        async def load() -> None:
            command[:] = ["EVAL", script.source]

        books = ReloadingCalls(len(calls), rex.NoScriptError)
        await books.run(send, load)
        return books.outcomes(translate)

    async def wait_list_then_eval(
        self, key: str, timeout: float, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """BLPOP, then the script: two round trips (a cluster pipeline would hold no order
        between a blocking pop and the call after it)."""
        await self.wait_list(key, timeout)
        return await self.eval(script, keys, args)

    async def wait_list(self, key: str, timeout: float) -> bool:
        async with _translated(timeout):
            return await self._client.blpop([key], timeout=max(timeout, 0.001)) is not None

    async def pop_list(self, key: str, timeout: float) -> str | None:
        async with _translated(timeout):
            popped: Any = await self._client.blpop([key], timeout=max(timeout, 0.001))
        return None if popped is None else str(popped[1])

    async def read_stream(
        self, key: str, last_id: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        async with _translated((block_ms or 0) / 1000):
            reply: Any = await self._client.xread({key: last_id}, count=count, block=block_ms)
        return [(entry, fields) for _, entries in reply or [] for entry, fields in entries]

    def _guarded(self) -> AbstractAsyncContextManager[None]:
        return _translated()

    async def _per_primary(self, *command: Any) -> list[Any]:
        """`command`'s reply from every primary that answers (the queue's slots may be on any
        of them); at connect only. A primary that fails (one just died, its replica not yet
        elected) is skipped; when none answers, the first one's error is raised."""
        await self._client.initialize()  # learns the nodes on its first call only
        primaries = self._client.get_primaries()
        self.primaries = len(primaries)
        replies, errors = [], []
        for node in primaries:
            try:
                reply: Any = await self._client.execute_command(*command, target_nodes=node)
            except (rex.RedisError, rex.RedisClusterException) as exc:
                errors.append(exc)
                continue
            replies.append(reply.get(node.name, reply) if isinstance(reply, dict) else reply)
        if not replies:
            raise errors[0] if errors else rex.RedisClusterException("the cluster has no primary")
        return replies

    async def server_version(self) -> tuple[int, ...]:
        """The oldest primary's version: every primary must run the scripts."""
        async with _translated():
            infos = await self._per_primary("INFO", "server")
        return min(_version(info["redis_version"]) for info in infos)

    async def config_get(self, parameter: str) -> str | None:
        """The setting as the primaries have it; where they differ, the first that is not the
        first primary's own (a warning about one primary's eviction policy is still due)."""
        async with _translated():
            found = await self._per_primary("CONFIG", "GET", parameter)
        values = [str(f[parameter]) for f in found if isinstance(f, dict) and parameter in f]
        return next((v for v in values if v != values[0]), values[0]) if values else None

    async def info(self, section: str) -> dict[str, str]:
        """One INFO section of the first primary."""
        async with _translated():
            [first, *_] = await self._per_primary("INFO", section)
        return {name: str(value) for name, value in first.items()}

    async def aclose(self) -> None:
        await self._client.aclose()
