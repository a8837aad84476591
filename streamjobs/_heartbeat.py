"""A pool's heartbeat: its state in the registry behind `get_workers()`, refreshed every
interval, with the event-loop lag measured in between (a blocked loop shows as unhealthy)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from .errors import StreamJobsError
from .redis_queue import RedisJobQueue

log = logging.getLogger("streamjobs.worker")

#: How often the loop's lag is sampled (seconds).
PROBE = 0.25


class Heartbeat:
    """Publishes `describe()` plus the loop lag for pool `pool_id`, kept `ttl` seconds."""

    def __init__(
        self,
        queue: RedisJobQueue,
        pool_id: str,
        describe: Callable[[], dict[str, str]],
        interval: float,
        ttl: float,
    ) -> None:
        self._queue, self._id, self._describe = queue, pool_id, describe
        self._interval, self._ttl = interval, ttl
        self._lag = 0.0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Beat every interval until cancelled; a failed beat is logged, the next one tried."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._probe)
            task_status.started()
            while True:
                await anyio.sleep(self._interval)
                try:
                    await self.beat()
                except StreamJobsError as exc:
                    log.warning("heartbeat failed: %s", exc)

    async def beat(self) -> None:
        """Publish the pool's state now, with the worst lag seen since the last beat."""
        record = {**self._describe(), "lag": f"{self._lag:.3f}"}
        self._lag = 0.0
        await self._queue.heartbeat(self._id, self._ttl, record)

    async def _probe(self) -> None:
        while True:
            before = time.monotonic()
            await anyio.sleep(PROBE)
            self._lag = max(self._lag, time.monotonic() - before - PROBE)
