"""Driver on a lean RESP connection of our own for asyncio: hiredis parses, an asyncio
protocol writes, and nothing else stands between a call and the socket.

Why not redis-py here: its asyncio client spends about twice the CPU of this one per round
trip, and a worker's throughput and an idle job's latency are round trips. This driver keeps
redis-py's semantics where they matter: replies decoded as UTF-8 (bad bytes replaced), every
command bounded by a deadline, errors translated in one place.

Commands that do not block share one connection, pipelined: concurrent callers' commands go
out in one write per event-loop turn, and replies come back in order. Blocking reads each
take a connection of their own, kept for reuse; one whose read was cancelled or failed is
closed, so that a late reply can never reach the next caller. Blocking stream reads (callers
waiting for results or following events, as many as an app likes) share at most
MAX_STREAM_READERS connections, later ones queued in turn; a pool's blocking pops (two per
pool) never queue behind them.

`redis://`, `rediss://` (TLS, the `ssl_*` options read as redis-py reads them) and `unix://`
URLs all work. The URL's `socket_timeout`, `socket_connect_timeout` and `client_name` apply as
in redis-py; connections are named `streamjobs:<pid>` unless the URL names them (CLIENT LIST
shows it).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import hiredis
from redis.connection import parse_url

from .._codec import pairs
from .._scripts import Script
from ..errors import RedisUnavailableError, StreamJobsError
from . import COMMAND_DEADLINE
from ._errors import translate
from ._pipeline import ReloadingCalls, ReplyLost
from ._replicas import READ_ONLY, Wait, check_written
from ._tls import tls_context

Entry = tuple[str, dict[str, str]]

#: Most connections held at once by blocking stream reads (`wait_for_result`, `events`).
MAX_STREAM_READERS = 32


class ReplyError(Exception):
    """An error reply from Redis (its text starts with the code: NOSCRIPT, NOGROUP, OOM...)."""


class NoScriptError(ReplyError):
    """EVALSHA named a script the server does not hold."""


def _failure(reply: ReplyError) -> ReplyError:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else reply


class _Connection(asyncio.Protocol):
    """One Redis connection: requests go out in order, replies resolve their futures in
    order. A request not answered by its deadline breaks the connection, failing all."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace", replyError=ReplyError)
        self._waiting: deque[tuple[asyncio.Future[Any], float, float]] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self.lost: Exception | None = None

    @property
    def open(self) -> bool:
        return self.lost is None and self._transport is not None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        try:
            while (reply := self._reader.gets()) is not False:
                if not waiting:
                    raise hiredis.ProtocolError("a reply arrived that no request asked for")
                future = waiting.popleft()[0]
                if not future.done():  # its caller may have been cancelled
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.close(ConnectionError(f"Redis spoke out of turn: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(exc or ConnectionError("Redis closed the connection"))

    # -- requests -------------------------------------------------------------------------

    def request(
        self, commands: Sequence[Sequence[Any]], timeout: float
    ) -> list[asyncio.Future[Any]]:
        """Send commands; one future per reply. Commands sent while replies are awaited go out
        together at the end of this event-loop turn (one write for many callers)."""
        if self.lost is not None:
            raise type(self.lost)(*self.lost.args)
        # Every command packed before any is sent or awaited: one that cannot be packed
        # raises here with nothing written, so no reply can ever land on another's future.
        packed = [hiredis.pack_command(tuple(command)) for command in commands]
        now = self._loop.time()
        idle = not self._waiting
        futures = []
        for _ in packed:
            future = self._loop.create_future()
            self._waiting.append((future, now + timeout, timeout))
            futures.append(future)
        if idle:  # write each at once, so Redis starts on the first
            assert self._transport is not None
            for command in packed:
                self._transport.write(command)
        else:
            if not self._out:
                self._loop.call_soon(self._flush)
            self._out += packed
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(now + timeout, self._check_deadlines)
        return futures

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self._transport is not None and self.lost is None:
            self._transport.write(b"".join(out))

    def _check_deadlines(self) -> None:
        self._watchdog = None
        if not self._waiting or self.lost is not None:
            return
        _, due, timeout = self._waiting[0]
        if due <= self._loop.time():
            self.close(TimeoutError(f"Redis did not answer within {timeout:g}s"))
        else:
            self._watchdog = self._loop.call_at(due, self._check_deadlines)

    def close(self, reason: Exception | None = None) -> None:
        """Fail every waiting request with `reason` and drop the connection."""
        if self.lost is None:
            self.lost = reason or ConnectionError("the connection was closed")
        lost = self.lost
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future = self._waiting.popleft()[0]
            if not future.done():  # a fresh exception each: each caller gets its traceback
                future.set_exception(type(lost)(*lost.args))
        if self._transport is not None:
            self._transport.abort()


def _hello(options: dict[str, Any]) -> list[tuple[list[Any], bool]]:
    """The commands that open each connection, each with whether its failure fails the
    connection: AUTH and SELECT from the URL, then CLIENT SETNAME (our default name is
    only a courtesy: an ACL user without CLIENT may still use the queue)."""
    hello: list[tuple[list[Any], bool]] = []
    if options.get("password") is not None:
        user = options.get("username")
        hello.append((["AUTH", *([user] if user else []), options["password"]], True))
    if int(options.get("db") or 0):
        hello.append((["SELECT", int(options["db"])], True))
    name = options.get("client_name")
    hello.append((["CLIENT", "SETNAME", name or f"streamjobs:{os.getpid()}"], bool(name)))
    return hello


def _checked(reply: Any) -> Any:
    """The reply, or its translated error raised."""
    if isinstance(reply, ReplyError):
        raise translate(reply) from None
    return reply


def _broken(exc: OSError) -> StreamJobsError:
    """The error for a broken connection: a missed deadline is Redis not answering."""
    return RedisUnavailableError(str(exc)) if isinstance(exc, TimeoutError) else translate(exc)


class RespDriver:
    """Carries streamjobs' commands over its own RESP connections (asyncio only)."""

    def __init__(self, url: str, wait: Wait | None = None) -> None:
        self._wait = wait
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]  # raises ValueError naming what is wrong with the URL
        self._tls = tls_context(options) if url.startswith("rediss://") else None
        self._path: str | None = options.get("path")
        self._host: str = options.get("host") or "localhost"
        self._port: int = int(options.get("port") or 6379)
        self._timeout = float(options.get("socket_timeout") or COMMAND_DEADLINE)
        self._connect_timeout = float(options.get("socket_connect_timeout") or self._timeout)
        self._hello = _hello(options)
        self._commands: _Connection | None = None
        self._opening: asyncio.Lock | None = None
        self._idle: list[_Connection] = []  # blocking connections between reads
        self._busy: set[_Connection] = set()
        self._stream_readers = asyncio.Semaphore(MAX_STREAM_READERS)  # FIFO: waiters in turn
        self._closed = False

    # -- connections ----------------------------------------------------------------------

    async def _open(self) -> _Connection:
        if self._closed:
            raise RedisUnavailableError("the driver is closed")
        loop = asyncio.get_running_loop()
        deadline = self._connect_timeout
        try:
            with anyio.fail_after(deadline):
                if self._path is not None:
                    _, conn = await loop.create_unix_connection(_Connection, self._path)
                else:
                    _, conn = await loop.create_connection(
                        _Connection, self._host, self._port, ssl=self._tls,
                        server_hostname=self._host if self._tls else None,
                    )  # fmt: skip
        except TimeoutError:
            raise RedisUnavailableError(
                f"Redis did not accept a connection within {deadline:g}s"
            ) from None
        except OSError as exc:
            raise translate(exc) from exc
        try:
            commands = [command for command, _ in self._hello]
            replies = await self._replies(conn, commands, self._timeout)
            for reply, (_, required) in zip(replies, self._hello):
                if required:  # AUTH, SELECT, a name the URL asked for: checked in order
                    _checked(reply)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connection(self) -> _Connection:
        conn = self._commands
        if conn is not None and conn.open:
            return conn
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._commands is None or not self._commands.open:
                self._commands = await self._open()
            return self._commands

    async def _run(self, *command: Any) -> Any:
        """One command's reply; an error reply is raised, translated."""
        [reply] = await self._send([command])
        return _checked(reply)

    async def _send(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Pipelined commands' replies, error replies among them (NOSCRIPT told apart)."""
        if not commands:
            return []
        return await self._replies(await self._connection(), commands, self._timeout)

    async def _replies(
        self, conn: _Connection, commands: Sequence[Sequence[Any]], timeout: float
    ) -> list[Any]:
        futures: list[asyncio.Future[Any]] = []
        try:
            futures = conn.request(commands, timeout)
            replies = [await future for future in futures]
        except TimeoutError as exc:
            raise RedisUnavailableError(str(exc)) from None
        except OSError as exc:
            raise translate(exc) from exc
        finally:
            for future in futures:  # any not awaited (an error, a cancellation): no one's now
                future.cancel()
        return [_failure(r) if isinstance(r, ReplyError) else r for r in replies]

    async def _blocking(self, block_s: float, *commands: Sequence[Any]) -> list[Any]:
        """Commands that block, on a connection of their own, bounded by the block time on top
        of the command deadline; the connection is reused only after clean replies. Error
        replies are returned."""
        conn = await self._borrow()
        clean = False
        try:
            replies = await self._replies(conn, commands, self._timeout + block_s)
            clean = True
            return replies
        finally:
            self._give_back(conn, clean)

    async def _borrow(self) -> _Connection:
        """A connection of the caller's own: an idle one, else a new one."""
        while self._idle and not self._idle[-1].open:
            self._idle.pop()
        conn = self._idle.pop() if self._idle else await self._open()
        self._busy.add(conn)
        return conn

    def _give_back(self, conn: _Connection, clean: bool) -> None:
        """Keep a borrowed connection for reuse after clean replies; else close it, so a late
        reply never reaches the next caller."""
        self._busy.discard(conn)
        if clean and conn.open and not self._closed:
            self._idle.append(conn)
        else:
            conn.close()

    # -- the Driver protocol --------------------------------------------------------------

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._wait is not None and script.name not in READ_ONLY:
            return await self._eval_waiting(self._wait, script, keys, args)
        [reply] = await self._send([("EVALSHA", script.sha, len(keys), *keys, *args)])
        if isinstance(reply, NoScriptError):
            await self._run("SCRIPT", "LOAD", script.source)
            return await self._run("EVALSHA", script.sha, len(keys), *keys, *args)
        return _checked(reply)

    async def _eval_waiting(
        self, wait: Wait, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """The script then WAIT in one write, on a connection of their own: WAIT blocks its
        connection, which must not hold up the shared one's other callers."""
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        reply, acknowledged = await self._blocking(wait.timeout_ms / 1000, call, wait.command)
        if isinstance(reply, NoScriptError):
            await self._run("SCRIPT", "LOAD", script.source)
            reply, acknowledged = await self._blocking(wait.timeout_ms / 1000, call, wait.command)
        return wait.check(acknowledged, _checked(reply))

    async def eval_many(
        self, script: Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        head = ("EVALSHA", script.sha, len(keys), *keys)
        wait = self._wait
        acknowledged: list[Any] = []

        async def send(todo: Sequence[int]) -> list[Any]:
            if wait is None:
                return await self._send_all([(*head, *calls[i]) for i in todo])
            commands = [(*head, *calls[i]) for i in todo]
            *replies, ack = await self._send_all([*commands, wait.command], own=wait)
            acknowledged.append(ack)
            return replies

        async def load() -> None:
            await self._run("SCRIPT", "LOAD", script.source)

        books = ReloadingCalls(len(calls), NoScriptError)
        # _send_all raises only when nothing went out; replies lost part way come as ReplyLost
        await books.run(send, load, failure_loses=False)
        outcomes = books.outcomes(translate)
        if wait is not None and acknowledged and not isinstance(acknowledged[-1], ReplyLost):
            check_written(wait, acknowledged[-1], outcomes)
        return outcomes

    async def _send_all(
        self, commands: Sequence[Sequence[Any]], own: Wait | None = None
    ) -> list[Any]:
        """Pipelined commands' replies, as `_send`; where the connection fails part way, the
        replies that came are kept and the rest are `ReplyLost`. Raises only when nothing
        could be sent. `own`: on a connection of their own, ending in that WAIT (see
        `_eval_waiting`), closed after unless every reply came."""
        if own is None:
            conn = await self._connection()
            timeout = COMMAND_DEADLINE
        else:
            conn = await self._borrow()
            timeout = COMMAND_DEADLINE + own.timeout_ms / 1000
        replies: list[Any] = []
        try:
            try:
                futures = conn.request(commands, timeout)
            except OSError as exc:
                raise _broken(exc) from exc
            try:
                for future in futures:
                    replies.append(await future)
            except OSError as exc:  # the connection broke (see _Connection.close)
                replies += [ReplyLost(_broken(exc))] * (len(futures) - len(replies))
            finally:
                for future in futures:  # any not awaited (a cancellation): no one's now
                    future.cancel()
        finally:
            if own is not None:
                clean = len(replies) == len(commands) and not any(
                    isinstance(r, ReplyLost) for r in replies
                )
                self._give_back(conn, clean)
        return [_failure(r) if isinstance(r, ReplyError) else r for r in replies]

    async def wait_list_then_eval(
        self, key: str, timeout: float, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        timeout = max(timeout, 0.001)
        pop = ("BLPOP", key, f"{timeout:.3f}")
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        wait = self._wait
        if wait is None:
            popped, reply = await self._blocking(timeout, pop, call)
        else:
            popped, reply, acknowledged = await self._blocking(
                timeout + wait.timeout_ms / 1000, pop, call, wait.command
            )
        _checked(popped)  # a refused pop (an ACL without BLPOP) did not wait: say so
        if isinstance(reply, NoScriptError):
            return await self.eval(script, keys, args)
        if wait is not None:
            return wait.check(acknowledged, _checked(reply))
        return _checked(reply)

    async def wait_list(self, key: str, timeout: float) -> bool:
        timeout = max(timeout, 0.001)
        [reply] = await self._blocking(timeout, ("BLPOP", key, f"{timeout:.3f}"))
        return _checked(reply) is not None

    async def pop_list(self, key: str, timeout: float) -> str | None:
        timeout = max(timeout, 0.001)
        [reply] = await self._blocking(timeout, ("BLPOP", key, f"{timeout:.3f}"))
        popped = _checked(reply)
        return None if popped is None else str(popped[1])

    async def read_stream(
        self, key: str, last_id: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        if block_ms is None:
            reply = await self._run("XREAD", "COUNT", count, "STREAMS", key, last_id)
        else:
            async with self._stream_readers:
                [reply] = await self._blocking(
                    block_ms / 1000, ("XREAD", "COUNT", count, "BLOCK", block_ms,
                                      "STREAMS", key, last_id),
                )  # fmt: skip
            reply = _checked(reply)
        entries = [entry for _, stream_entries in reply or [] for entry in stream_entries]
        return [(entry, pairs(fields or [])) for entry, fields in entries]

    async def stream_range(self, key: str, count: int, *, reverse: bool) -> list[Entry]:
        if reverse:
            reply = await self._run("XREVRANGE", key, "+", "-", "COUNT", count)
        else:
            reply = await self._run("XRANGE", key, "-", "+", "COUNT", count)
        return [(entry, pairs(fields or [])) for entry, fields in reply]

    async def hget(self, key: str, field: str) -> str | None:
        value = await self._run("HGET", key, field)
        return None if value is None else str(value)

    async def hgetall(self, key: str) -> dict[str, str]:
        return pairs(await self._run("HGETALL", key))

    async def create_group(self, stream: str, group: str) -> None:
        [groups] = await self._send([("XINFO", "GROUPS", stream)])
        if not isinstance(groups, ReplyError) and any(  # an error: no such key yet
            pairs(g).get("name") == group for g in groups
        ):
            return  # asked first: a full Redis refuses XGROUP CREATE even when it exists
        [reply] = await self._send([("XGROUP", "CREATE", stream, group, "0", "MKSTREAM")])
        if not (isinstance(reply, ReplyError) and str(reply).startswith("BUSYGROUP")):
            _checked(reply)

    async def server_version(self) -> tuple[int, ...]:
        version = (await self.info("server")).get("redis_version")
        if version is None:
            raise RedisUnavailableError("the server did not report a redis_version")
        return tuple(int(part) for part in version.split(".")[:3])

    async def config_get(self, parameter: str) -> str | None:
        return pairs(await self._run("CONFIG", "GET", parameter)).get(parameter)

    async def info(self, section: str) -> dict[str, str]:
        text: str = await self._run("INFO", section)
        fields = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {name: value for name, value in fields if not name.startswith("#")}

    async def aclose(self) -> None:
        self._closed = True
        for conn in [self._commands, *self._idle, *self._busy]:
            if conn is not None:
                conn.close()
        self._commands, self._idle = None, []
        self._busy.clear()
        await asyncio.sleep(0)  # let the transports finish closing
