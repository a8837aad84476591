"""Events to the in-process event bus, from a task of their own: a slow or hanging bus never
delays a job nor the recording of its outcome, nor a stop. A bus that falls behind loses
events (counted, and logged at most every `WARN_EVERY` seconds), never jobs."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .events import EventBus, publish

log = logging.getLogger("streamjobs.events")

#: Events waiting for the bus; past this, new ones are dropped.
BACKLOG = 1000
#: Seconds between two warnings about dropped events.
WARN_EVERY = 10.0
#: Seconds a stopping pool lets the bus catch up before it cancels the publisher.
FLUSH_GRACE = 2.0

Event = tuple[str, dict[str, Any]]


class EventPublisher:
    """Hands events to the bus in order, one at a time, from `run()` in the pool's task group."""

    def __init__(self, bus: EventBus | None = None) -> None:
        self.bus = bus
        self.dropped = 0  # events lost because the bus fell behind
        self._send: MemoryObjectSendStream[Event] | None = None
        self._queued = 0  # sent and not yet published
        self._flushed: anyio.Event | None = None
        self._warned_at = -WARN_EVERY
        self._warned_count = 0

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        """Queue an event for the bus without waiting; dropped when the backlog is full."""
        if self.bus is None:
            return
        try:
            if self._send is None:
                raise anyio.ClosedResourceError
            self._send.send_nowait((event_type, payload))
            self._queued += 1
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._drop(event_type)

    def _drop(self, event_type: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            log.warning(
                "event bus is falling behind: %s event dropped (%d dropped in all, %d since "
                "the last warning)", event_type, self.dropped, self.dropped - self._warned_count,
            )  # fmt: skip
            self._warned_at, self._warned_count = now, self.dropped

    async def wait_flushed(self) -> None:
        """Return once every queued event went to the bus."""
        while self._queued:
            self._flushed = self._flushed or anyio.Event()
            await self._flushed.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish queued events until cancelled."""
        send, receive = anyio.create_memory_object_stream[Event](BACKLOG)
        self._send = send
        task_status.started()
        try:
            await self._publish_all(receive)
        finally:
            self._send, self._queued = None, 0
            send.close()
            receive.close()
            self._wake_flushers()

    async def _publish_all(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        async for event_type, payload in receive:
            try:
                await publish(self.bus, event_type, payload)
            finally:
                self._queued -= 1
                if not self._queued:
                    self._wake_flushers()

    def _wake_flushers(self) -> None:
        if self._flushed is not None:
            self._flushed.set()
            self._flushed = None
