"""A TCP proxy for fault injection, on anyio: forwards 127.0.0.1:<port> to a Redis port and,
on demand, cuts connections (mid-request or mid-reply), stalls them, or rewrites replies.

`Proxy.run` serves in a task group (async tests); `ProxyThread` hosts it on an event loop in a
thread of its own (tests that drive worker processes), with the same controls.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.from_thread
from anyio.abc import SocketStream, TaskStatus

from tests._redis import free_port

Rewrite = Callable[[bytes], bytes]
T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    scope: anyio.CancelScope
    cut: str | None = None  # "request" or "reply": cut after forwarding half the next chunk


def old_version(version: str = "6.0.9") -> Rewrite:
    """A reply rewrite that makes INFO report an older Redis, keeping the RESP lengths: the
    new version is padded with 9s to the real one's length."""
    pattern = re.compile(rb"redis_version:([0-9.]+)")

    def rewrite(chunk: bytes) -> bytes:
        def older(m: re.Match[bytes]) -> bytes:
            real = m.group(1)
            fake = version.encode()[: len(real)].ljust(len(real), b"9")
            return b"redis_version:" + fake

        return pattern.sub(older, chunk)

    return rewrite


class Proxy:
    """Forwards every connection to `upstream_port`; `cut()`, `stall()` and `rewrite` inject
    faults. `cuts` counts connections cut so far."""

    def __init__(self, upstream_port: int, rewrite: Rewrite | None = None) -> None:
        self.upstream_port, self.port, self.rewrite = upstream_port, free_port(), rewrite
        self._links: set[_Link] = set()
        self._flowing = anyio.Event()
        self._flowing.set()
        self._scope: anyio.CancelScope | None = None
        self._markers: tuple[bytes, ...] = ()
        self._marked_cuts = 0
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept and forward connections until `close()`."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        with anyio.CancelScope() as self._scope:
            async with listener:
                task_status.started()
                await listener.serve(self._handle)

    def close(self) -> None:
        """Stop accepting and drop every connection (call on the proxy's event loop)."""
        self.cut_all()
        self._flowing.set()
        if self._scope is not None:
            self._scope.cancel()

    def cut_all(self) -> int:
        """Close every connection now, whatever is in flight; returns how many."""
        links = list(self._links)
        for link in links:
            link.scope.cancel()
        self.cuts += len(links)
        return len(links)

    def cut_midway(self, direction: str) -> int:
        """Cut every connection in the middle of its next request or reply: half of the next
        chunk goes through, then the connection closes."""
        for link in self._links:
            link.cut = direction
        return len(self._links)

    def cut_replies_with(self, markers: tuple[bytes, ...], times: int) -> None:
        """Drop the connection instead of forwarding the next `times` replies that contain
        every one of `markers`: the command ran in Redis, its client never hears of it."""
        self._markers, self._marked_cuts = markers, times

    def stall(self) -> None:
        """Stop forwarding bytes (connections stay open) until `resume()`."""
        if self._flowing.is_set():
            self._flowing = anyio.Event()

    def resume(self) -> None:
        self._flowing.set()

    async def _handle(self, client: SocketStream) -> None:
        link = _Link(anyio.CancelScope())
        async with client:
            with link.scope:
                try:
                    upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
                except OSError:
                    return
                self._links.add(link)
                try:
                    async with upstream, anyio.create_task_group() as tg:
                        tg.start_soon(self._pump, client, upstream, link, "request")
                        tg.start_soon(self._pump, upstream, client, link, "reply")
                finally:
                    self._links.discard(link)

    async def _pump(self, src: SocketStream, dst: SocketStream, link: _Link, way: str) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            while True:
                chunk = await src.receive(65536)
                await self._flowing.wait()
                if way == "reply" and self.rewrite is not None:
                    chunk = self.rewrite(chunk)
                if way == "reply" and self._marked_cuts and all(m in chunk for m in self._markers):
                    self._marked_cuts -= 1
                    self.cuts += 1
                    link.scope.cancel()
                    return
                if link.cut == way:
                    await dst.send(chunk[: max(1, len(chunk) // 2)])
                    self.cuts += 1
                    link.scope.cancel()
                    return
                await dst.send(chunk)
        link.scope.cancel()  # one side closed: close the other


class ProxyThread:
    """A `Proxy` on an event loop in its own thread, controlled from synchronous tests."""

    def __init__(self, proxy: Proxy, portal: anyio.from_thread.BlockingPortal) -> None:
        self.proxy, self._portal = proxy, portal

    @property
    def url(self) -> str:
        return self.proxy.url

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn` on the proxy's loop from a fresh context: a portal call carries its
        caller's context variables, and a caller inside `anyio.run(..., backend="trio")`
        would carry sniffio's "trio" into the proxy's asyncio loop."""
        return contextvars.Context().run(self._portal.call, fn, *args)

    def cut_all(self) -> int:
        return self._call(self.proxy.cut_all)

    def cut_midway(self, direction: str) -> int:
        return self._call(self.proxy.cut_midway, direction)

    def cut_replies_with(self, markers: tuple[bytes, ...], times: int) -> None:
        self._call(self.proxy.cut_replies_with, markers, times)

    def stall(self) -> None:
        self._call(self.proxy.stall)

    def resume(self) -> None:
        self._call(self.proxy.resume)

    @property
    def cuts(self) -> int:
        return self.proxy.cuts


@contextlib.contextmanager
def proxy_thread(upstream_port: int, rewrite: Rewrite | None = None) -> Iterator[ProxyThread]:
    """Run a proxy to `upstream_port` in a thread for the duration of the block (open it
    outside any event loop: its start and stop run in the caller's context)."""
    proxy = Proxy(upstream_port, rewrite)
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(proxy.run)
        try:
            yield ProxyThread(proxy, portal)
        finally:
            portal.call(proxy.close)
            with contextlib.suppress(BaseException):
                future.result(timeout=10)
