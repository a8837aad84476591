"""Driver on redis-py's asyncio client (with hiredis): the fastest choice under asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis import exceptions as rex

from .._scripts import Script
from ..errors import RedisUnavailableError
from . import COMMAND_DEADLINE
from ._errors import translate
from ._pipeline import ReloadingCalls
from ._redis_py_reads import RedisPyReads
from ._replicas import READ_ONLY, Wait, check_written
from .sentinel import is_sentinel

Entry = tuple[str, dict[str, str]]

#: Connections for commands that do not block; more callers wait for a free one.
MAX_CONNECTIONS = 32


@asynccontextmanager
async def _translated(deadline: float | None = None) -> AsyncIterator[None]:
    """Turn client errors into streamjobs errors; bound blocking calls by `deadline`
    (the others are bounded by the socket timeout, which costs nothing per call)."""
    try:
        with anyio.fail_after(deadline):
            yield
    except rex.RedisError as exc:
        raise translate(exc) from exc
    except TimeoutError:
        raise RedisUnavailableError(f"Redis did not answer within {deadline:g}s") from None


def _blocking_deadline(block_ms: int | None) -> float:
    return COMMAND_DEADLINE + (block_ms or 0) / 1000


class RedisPyDriver(RedisPyReads):
    """Carries streamjobs' commands over redis-py: one bounded pool for commands, and a
    separate one for blocking reads so that they can never starve the rest."""

    _client: aioredis.Redis
    _blocking: aioredis.Redis

    def __init__(self, url: str, wait: Wait | None = None) -> None:
        options: dict[str, Any] = {
            "decode_responses": True, "encoding_errors": "replace", "health_check_interval": 30,
        }
        if not url.startswith("unix://"):  # a unix socket has no keepalive (redis-py refuses it)
            options["socket_keepalive"] = True
        self._wait = wait
        self._sentinel: Any = None
        if is_sentinel(url):
            from .sentinel import redis_py_async

            self._sentinel, self._client, self._blocking = redis_py_async(
                url, max_connections=MAX_CONNECTIONS, socket_timeout=COMMAND_DEADLINE, **options
            )
            return
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=None,
            socket_timeout=COMMAND_DEADLINE, **options,
        )  # fmt: skip
        self._client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        self._blocking = aioredis.Redis.from_url(url, socket_timeout=None, **options)

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._wait is not None and script.name not in READ_ONLY:
            return await self._eval_waiting(self._wait, script, keys, args)
        async with _translated():
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                await self._client.script_load(script.source)
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    async def _eval_waiting(
        self, wait: Wait, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """The script then WAIT, in one write on one connection (again after NOSCRIPT)."""
        for _ in range(2):
            async with _translated(COMMAND_DEADLINE + wait.timeout_ms / 1000):
                pipe = self._client.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.execute_command(*wait.command)
                reply, acknowledged = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, rex.NoScriptError):
                break
            async with _translated():
                await self._client.script_load(script.source)
        if isinstance(reply, Exception):
            raise translate(reply) from reply
        return wait.check(acknowledged, reply)

    async def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        wait = self._wait
        acknowledged: list[Any] = []

        async def send(todo: Sequence[int]) -> list[Any]:
            deadline = None if wait is None else COMMAND_DEADLINE + wait.timeout_ms / 1000
            async with _translated(deadline):  # on failure redis-py cannot tell which came
                pipe = self._client.pipeline(transaction=False)
                for i in todo:
                    pipe.evalsha(script.sha, len(keys), *keys, *calls[i])
                if wait is None:
                    return await pipe.execute(raise_on_error=False)
                pipe.execute_command(*wait.command)
                *replies, ack = await pipe.execute(raise_on_error=False)
                acknowledged.append(ack)
                return replies

        async def load() -> None:
            async with _translated():
                await self._client.script_load(script.source)

        books = ReloadingCalls(len(calls), rex.NoScriptError)
        await books.run(send, load)
        outcomes = books.outcomes(translate)
        if wait is not None and acknowledged:
            check_written(wait, acknowledged[-1], outcomes)
        return outcomes

    async def wait_list_then_eval(
        self, key: str, timeout: float, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        timeout = max(timeout, 0.001)
        wait = self._wait
        extra = 0.0 if wait is None else wait.timeout_ms / 1000
        async with _translated(COMMAND_DEADLINE + timeout + extra):
            pipe = self._blocking.pipeline(transaction=False)
            pipe.blpop([key], timeout=timeout)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            if wait is not None:
                pipe.execute_command(*wait.command)
                popped, reply, acknowledged = await pipe.execute(raise_on_error=False)
            else:
                popped, reply = await pipe.execute(raise_on_error=False)
        if isinstance(popped, Exception):  # a refused pop (an ACL without BLPOP) did not wait
            raise translate(popped) from popped
        if isinstance(reply, rex.NoScriptError):
            return await self.eval(script, keys, args)
        if isinstance(reply, Exception):
            raise translate(reply) from reply
        if wait is not None:
            return wait.check(acknowledged, reply)
        return reply

    async def wait_list(self, key: str, timeout: float) -> bool:
        async with _translated(COMMAND_DEADLINE + timeout):
            return await self._blocking.blpop([key], timeout=max(timeout, 0.001)) is not None

    async def pop_list(self, key: str, timeout: float) -> str | None:
        async with _translated(COMMAND_DEADLINE + timeout):
            popped = await self._blocking.blpop([key], timeout=max(timeout, 0.001))
        return None if popped is None else str(popped[1])

    async def read_stream(
        self, key: str, last_id: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        client = self._client if block_ms is None else self._blocking
        async with _translated(_blocking_deadline(block_ms)):
            reply: Any = await client.xread({key: last_id}, count=count, block=block_ms)
        return [(entry, fields) for _, entries in reply or [] for entry, fields in entries]

    def _guarded(self) -> AbstractAsyncContextManager[None]:
        return _translated()

    async def server_version(self) -> tuple[int, ...]:
        async with _translated():
            info = await self._client.info("server")
        return tuple(int(part) for part in str(info["redis_version"]).split(".")[:3])

    async def config_get(self, parameter: str) -> str | None:
        async with _translated():
            found: Any = await self._client.config_get(parameter)
        value = found.get(parameter)
        return None if value is None else str(value)

    async def info(self, section: str) -> dict[str, str]:
        async with _translated():
            fields: Any = await self._client.info(section)
        return {name: str(value) for name, value in fields.items()}

    async def aclose(self) -> None:
        await self._blocking.aclose()
        await self._client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()
