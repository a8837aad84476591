"""Completions recorded in batches: one complete.lua call carries every job that finished
while the previous call was in flight, so a busy pool pays one round trip for many jobs and
an idle one pays no added delay."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from .errors import StreamJobsError
from .redis_queue import Delivery, LeaseLostError, RedisJobQueue

#: Most completions carried by one script call.
MAX_BATCH = 500


class _Closed(Exception):
    """The recorder stopped before this completion was flushed: record it directly."""


@dataclass
class _Pending:
    delivery: Delivery
    result_json: str
    done: anyio.Event = field(default_factory=anyio.Event)
    error: Exception | None = None


class CompletionRecorder:
    """Gathers completed jobs and records them with as few script calls as possible."""

    def __init__(self, queue: RedisJobQueue) -> None:
        self._queue = queue
        self._waiting: list[_Pending] = []
        self._wake = anyio.Event()
        self._running = False

    async def complete(self, d: Delivery, result_json: str) -> None:
        """Record one completion (raises LeaseLostError when refused as stale)."""
        if self._running:
            item = _Pending(d, result_json)
            self._waiting.append(item)
            self._wake.set()
            await item.done.wait()
            if item.error is None:
                return
            if not isinstance(item.error, _Closed):
                raise item.error
        await self._queue.complete(d, result_json)

    async def run(self) -> None:
        """Flush completions until cancelled; a flush under way always finishes."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                if self._waiting:
                    self._wake.set()
                with anyio.CancelScope(shield=True):
                    await self._flush(batch)
        finally:
            self._running = False
            for item in self._waiting:
                item.error = _Closed()
                item.done.set()

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            codes = await self._queue.complete_many([(i.delivery, i.result_json) for i in batch])
        except StreamJobsError as exc:
            for item in batch:
                item.error = exc
                item.done.set()
            return
        for item, code in zip(batch, codes):
            if code == 0:
                item.error = LeaseLostError("the job's lease passed to another worker")
            item.done.set()
