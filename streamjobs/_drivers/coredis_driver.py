"""Driver on coredis: anyio-native, so it runs under trio as well as asyncio.

coredis keeps its connections in a task group owned by the client, which one task must enter
and later exit, with no cancel scope opened or closed in between. The driver enters it on its
first command, which `RedisJobQueue.connect()` issues (`server_version`), and leaves it in
`aclose()`: both run in the task that owns the queue's lifetime, `async with JobService(...)`
(or `initialize()` and `close()` from one task, not inside a `fail_after` of their own). A
first command that fails leaves it at once, so a failed connect leaves nothing open.
`async with driver:` does the same explicitly. Commands may come from any task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import anyio
import coredis
from coredis import exceptions as cex
from coredis.retry import NoRetryPolicy
from redis.connection import parse_url

from .._scripts import Script
from ..errors import RedisNotReadyError, RedisUnavailableError
from . import COMMAND_DEADLINE
from ._errors import translate
from ._pipeline import ReloadingCalls
from ._replicas import READ_ONLY, Wait, check_written
from ._tls import tls_context
from .sentinel import is_sentinel

Entry = tuple[str, dict[str, str]]


@asynccontextmanager
async def _translated(deadline: float) -> AsyncIterator[None]:
    """Bound a command in time and turn client errors into streamjobs errors."""
    try:
        with anyio.fail_after(deadline):
            yield
    except TimeoutError:
        raise RedisUnavailableError(f"Redis did not answer within {deadline:g}s") from None
    except cex.RedisError as exc:
        raise translate(exc) from exc


class CoredisDriver:
    """Carries streamjobs' commands over one coredis connection pool."""

    name = "coredis"

    def __init__(self, url: str, wait: Wait | None = None) -> None:
        # No retries inside the client: its default runs a command again after a lost reply,
        # scripts included, where every other driver raises RedisUnavailableError and leaves
        # the retry to the layer that knows whether it is safe (workers, submit with job_id).
        # A rediss:// URL's ssl_* options are read as the other drivers read them (coredis
        # alone would skip hostname checks and make the CA optional by default).
        self._wait = wait
        #: What the pool's opening enters, in order: the sentinels' clients first, if any.
        self._contexts: list[Any] = []
        self._client: coredis.Redis[str] | coredis.RedisCluster[str]
        if is_sentinel(url):
            from .sentinel import coredis_client

            manager, self._client = coredis_client(url, retry_policy=NoRetryPolicy())
            self._contexts = [manager, self._client]
        else:
            tls: dict[str, Any] = {}
            if url.startswith("rediss://"):
                tls["ssl_context"] = tls_context(parse_url(url))  # type: ignore[no-untyped-call]
            self._client = coredis.Redis.from_url(
                url, decode_responses=True, retry_policy=NoRetryPolicy(), **tls
            )
            self._contexts = [self._client]
        self._stack: AsyncExitStack | None = None
        self._opening = anyio.Lock()

    async def __aenter__(self) -> CoredisDriver:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _open(self) -> bool:
        """Enter the client's connection pool unless it is open; True when this call opened it."""
        if self._stack is not None:
            return False
        async with self._opening:
            if self._stack is not None:
                return False
            stack = AsyncExitStack()
            try:
                for context in self._contexts:
                    await stack.enter_async_context(context)
            except cex.RedisError as exc:
                await stack.aclose()
                raise translate(exc) from exc
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack
            return True

    @asynccontextmanager
    async def _command(
        self, block: float = 0.0
    ) -> AsyncIterator[coredis.Redis[str] | coredis.RedisCluster[str]]:
        """The client for one command, bounded in time (`block` seconds on top for a blocking
        one) and with its errors translated; a failed first command closes the pool again
        (see the module docstring). The pool opens outside the deadline's scope."""
        opened = await self._open()
        try:
            async with _translated(COMMAND_DEADLINE + block):
                yield self._client
        except RedisNotReadyError as exc:
            self._drop_if_demoted(exc)
            if opened:
                await self.aclose()
            raise
        except BaseException:
            if opened:  # no shield here: the pool's scope must close before any new one
                await self.aclose()
            raise

    def _drop_if_demoted(self, exc: Exception) -> None:
        """A READONLY answer behind sentinels: the primary these connections reach was
        demoted. Drop them all, so that the next command asks the sentinels again."""
        if len(self._contexts) > 1 and "READONLY" in str(exc):
            self._client.connection_pool.disconnect()

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._wait is not None and script.name not in READ_ONLY:
            return await self._eval_waiting(self._wait, script, keys, args)
        async with self._command() as client:
            try:
                return await client.evalsha(script.sha, keys, args)
            except cex.NoScriptError:
                await client.script_load(script.source)
                return await client.evalsha(script.sha, keys, args)

    async def _eval_waiting(
        self, wait: Wait, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """The script then WAIT, pipelined on one connection (again after NOSCRIPT)."""
        for _ in range(2):
            async with (
                self._command(wait.timeout_ms / 1000) as client,
                client.pipeline(transaction=False, raise_on_error=False) as pipe,
            ):
                pipe.evalsha(script.sha, keys, args)
                pipe.wait(wait.replicas, wait.timeout_ms)
            reply, acknowledged = pipe.results or (None, None)
            if not isinstance(reply, cex.NoScriptError):
                break
            async with self._command() as client:
                await client.script_load(script.source)
        if isinstance(reply, Exception):
            error = translate(reply)
            self._drop_if_demoted(error)
            raise error from reply
        return wait.check(acknowledged, reply)

    async def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        wait = self._wait
        acknowledged: list[Any] = []

        async def send(todo: Sequence[int]) -> Sequence[Any]:
            block = 0.0 if wait is None else wait.timeout_ms / 1000
            async with (  # on failure coredis cannot tell which replies came
                self._command(block) as client,
                client.pipeline(transaction=False, raise_on_error=False) as pipe,
            ):
                for i in todo:
                    pipe.evalsha(script.sha, keys, calls[i])
                if wait is not None:
                    pipe.wait(wait.replicas, wait.timeout_ms)
            if wait is None:
                return pipe.results or ()
            *replies, ack = pipe.results or ()
            acknowledged.append(ack)
            return replies

        async def load() -> None:
            async with self._command() as client:
                await client.script_load(script.source)

        books = ReloadingCalls(len(calls), cex.NoScriptError)
        await books.run(send, load)
        outcomes = books.outcomes(translate)
        for outcome in outcomes:
            if isinstance(outcome, RedisNotReadyError):
                self._drop_if_demoted(outcome)
        if wait is not None and acknowledged:
            check_written(wait, acknowledged[-1], outcomes)
        return outcomes

    async def wait_list_then_eval(
        self, key: str, timeout: float, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        timeout = max(timeout, 0.001)
        wait = self._wait
        block = timeout if wait is None else timeout + wait.timeout_ms / 1000
        async with self._command(block) as client:
            # One write, as on the resp driver: Redis runs the script the moment the pop returns.
            async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
                pipe.blpop([key], timeout=timeout)
                pipe.evalsha(script.sha, keys, args)
                if wait is not None:
                    pipe.wait(wait.replicas, wait.timeout_ms)
            results = pipe.results or (None, None, None)
            popped, reply = results[0], results[1]
            if isinstance(popped, Exception):
                raise popped
            if isinstance(reply, cex.NoScriptError):
                return await self.eval(script, keys, args)  # loads it, runs it again
            if isinstance(reply, Exception):
                raise reply
            if wait is not None:
                return wait.check(results[2], reply)
            return reply

    async def wait_list(self, key: str, timeout: float) -> bool:
        async with self._command(timeout) as client:
            return await client.blpop([key], timeout=max(timeout, 0.001)) is not None

    async def pop_list(self, key: str, timeout: float) -> str | None:
        async with self._command(timeout) as client:
            popped = await client.blpop([key], timeout=max(timeout, 0.001))
        return None if popped is None else str(popped[1])

    async def read_stream(
        self, key: str, last_id: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        async with self._command((block_ms or 0) / 1000) as client:
            reply = await client.xread({key: last_id}, count=count, block=block_ms)
        return [_entry(e) for entries in (reply or {}).values() for e in entries]

    async def stream_range(self, key: str, count: int, *, reverse: bool) -> list[Entry]:
        async with self._command() as client:
            if reverse:
                entries = await client.xrevrange(key, count=count)
            else:
                entries = await client.xrange(key, count=count)
        return [_entry(e) for e in entries]

    async def hget(self, key: str, field: str) -> str | None:
        async with self._command() as client:
            return await client.hget(key, field)

    async def hgetall(self, key: str) -> dict[str, str]:
        async with self._command() as client:
            return dict(await client.hgetall(key))

    async def create_group(self, stream: str, group: str) -> None:
        async with self._command() as client:
            with suppress(cex.ResponseError):  # no such key yet
                if any(g["name"] == group for g in await client.xinfo_groups(stream)):
                    return  # asked first: a full Redis refuses XGROUP CREATE even when it exists
            with suppress(cex.StreamDuplicateConsumerGroupError):  # BUSYGROUP: it exists
                await client.xgroup_create(stream, group, identifier="0", mkstream=True)

    async def server_version(self) -> tuple[int, ...]:
        async with self._command() as client:
            info = await client.info("server")
        return tuple(int(part) for part in str(info["redis_version"]).split(".")[:3])

    async def config_get(self, parameter: str) -> str | None:
        async with self._command() as client:
            found = await client.config_get([parameter])
        value = found.get(parameter)
        return None if value is None else str(value)

    async def info(self, section: str) -> dict[str, str]:
        async with self._command() as client:
            fields = await client.info(section)
        return {name: str(value) for name, value in fields.items()}

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


def _entry(entry: Any) -> Entry:
    """A coredis StreamEntry as the (id, fields) pair the Driver protocol returns."""
    return str(entry.identifier), dict(entry.field_values)
