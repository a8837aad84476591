"""Threads for plain `def` handlers: at most one per worker of the pool (anyio's shared default
limiter would cap every pool at 40), and a job's timeout counts from the moment its thread
runs it, never while it waits for one. A thread cannot be stopped: the pool keeps a timed-out
job's worker and lease until its thread returns (see `AsyncWorkerPool._expire`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from .redis_queue import Delivery

T = TypeVar("T")

log = logging.getLogger("streamjobs.worker")

#: Called once a job's thread is about to run its handler: its timeout starts then.
OnStart = Callable[["Delivery", bool], None]


class HandlerThreads:
    """One pool's handler threads, as many at once as it has workers."""

    def __init__(self) -> None:
        self._limiter: anyio.CapacityLimiter | None = None
        self._unbounded: anyio.CapacityLimiter | None = None
        self.running: dict[str, Delivery] = {}  # jobs whose handler runs in a thread now
        self.overran: set[str] = set()  # past their timeout, their thread still running

    def open(self, size: int) -> None:
        """Fresh limiters for a run of the pool (they belong to its event loop)."""
        self._limiter = anyio.CapacityLimiter(size)
        self._unbounded = anyio.CapacityLimiter(math.inf)  # ours is the limit that counts

    def resize(self, size: int) -> None:
        """Follow the pool's worker count; threads running now are not cut short."""
        if self._limiter is not None:
            self._limiter.total_tokens = size

    async def run(self, d: Delivery, call: Callable[[], T], on_start: OnStart) -> T:
        """Run `call` in a thread once one is free; `on_start(d, True)` as it starts. A timeout
        does not cancel this; only abandoning the job does (lease lost, a stop that hands jobs
        back), and the thread is then left to finish alone."""
        if self._limiter is None or self._unbounded is None:
            raise RuntimeError("the pool is not running")
        async with self._limiter:
            on_start(d, True)
            self.running[d.job_id] = d
            try:
                return await anyio.to_thread.run_sync(
                    call, abandon_on_cancel=True, limiter=self._unbounded
                )
            finally:
                del self.running[d.job_id]

    def overrun(self, job_id: str) -> Delivery | None:
        """Mark a job past its timeout whose thread still runs (returned; None if it has none):
        its result, when it comes, is refused."""
        d = self.running.get(job_id)
        if d is not None:
            self.overran.add(job_id)
            timeout = d.job.timeout if d.job else 0
            log.warning("job %s ran past its %gs timeout in a thread, which cannot be stopped: "
                        "its worker waits for it, keeps its lease and will refuse its result",
                        job_id, timeout)  # fmt: skip
        return d
