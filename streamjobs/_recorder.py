"""Completions recorded in batches: one complete.lua call carries every job that finished
while the previous call was in flight, so a busy pool pays one round trip for many jobs and
an idle one pays no added delay. A worker hands its completion over and moves on; the job
stays leased until Redis has recorded it."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._outcome import reconnect_delay
from .errors import StreamJobsError
from .redis_queue import Delivery, RedisJobQueue

log = logging.getLogger("streamjobs.worker")

#: Most completions carried by one script call.
MAX_BATCH = 500
#: Completions waiting to be recorded before workers wait for the recorder.
BACKLOG = 1000

Item = tuple[Delivery, str, Any]
#: Called once per completion: (delivery, token, recorded?); None when it could not be sent.
OnRecorded = Callable[[Delivery, Any, "bool | None"], Awaitable[None]]


class CompletionRecorder:
    """Gathers completed jobs and records them with as few script calls as possible."""

    def __init__(self, queue: RedisJobQueue, on_recorded: OnRecorded, deadline: float) -> None:
        self._queue, self._on_recorded, self._deadline = queue, on_recorded, deadline
        self._send: MemoryObjectSendStream[Item] | None = None
        self._receive: MemoryObjectReceiveStream[Item] | None = None
        self._pending = 0
        self._idle = anyio.Event()

    async def add(self, d: Delivery, result_json: str, token: Any) -> None:
        """Queue a completion; waits only when the backlog is full."""
        if self._send is None:
            raise RuntimeError("the recorder is not running")
        self._pending += 1
        try:
            self._send.send_nowait((d, result_json, token))  # no checkpoint on the hot path
        except anyio.WouldBlock:
            try:
                await self._send.send((d, result_json, token))
            except BaseException:
                self._pending -= 1
                raise

    async def wait_idle(self) -> None:
        """Return once every queued completion went to Redis (or was given up)."""
        while self._pending:
            await self._idle.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Record completions until cancelled; what is queued then is still recorded."""
        self._send, self._receive = anyio.create_memory_object_stream[Item](BACKLOG)
        task_status.started()
        try:
            while True:
                batch = [await self._receive.receive()]
                batch += self._take(MAX_BATCH - 1)
                with anyio.CancelScope(shield=True):
                    await self._record(batch)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._deadline):
                while rest := self._take(MAX_BATCH):
                    await self._record(rest)
            self._send.close()
            self._receive.close()
            self._send, self._receive = None, None

    def _take(self, most: int) -> list[Item]:
        taken: list[Item] = []
        assert self._receive is not None
        while len(taken) < most:
            try:
                taken.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return taken

    async def _record(self, batch: list[Item]) -> None:
        codes = await self._send_batch(batch)
        for (d, _, token), code in zip(batch, codes):
            await self._on_recorded(d, token, code)
        self._pending -= len(batch)
        if not self._pending:
            self._idle.set()
            self._idle = anyio.Event()

    async def _send_batch(self, batch: list[Item]) -> list[bool | None]:
        """complete.lua for the batch, retried through Redis outages until the deadline."""
        failures = 0
        with anyio.move_on_after(self._deadline):
            while True:
                try:
                    codes = await self._queue.complete_many([(d, r) for d, r, _ in batch])
                    return [code == 1 for code in codes]
                except StreamJobsError as exc:
                    failures += 1
                    delay = reconnect_delay(failures, random.random())
                    log.warning("recording %d completion(s) failed (%s); again in %.2fs",
                                len(batch), exc, delay)  # fmt: skip
                    await anyio.sleep(delay)
        return [None] * len(batch)
