"""Leases: a thread keeps running jobs' entries fresh, so a handler that blocks the event loop
does not lose its job while its worker lives, and a job past its timeout lets go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import anyio

from ._drivers.redis_sync import SyncDriver
from .errors import StreamJobsError
from .redis_queue import Delivery, RedisJobQueue

log = logging.getLogger("streamjobs.lease")


class LeaseKeeper:
    """Renews the leases a consumer holds every `interval` seconds, from its own thread."""

    def __init__(self, queue: RedisJobQueue, consumer: str, interval: float) -> None:
        self._queue, self._consumer, self._interval = queue, consumer, interval
        self._held: dict[str, tuple[int, str, float, int]] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()

    def hold(self, d: Delivery, timeout: float | None, grace: float) -> None:
        """Renew this job's lease until `timeout` (+ grace) seconds from now."""
        deadline = time.monotonic() + timeout + grace if timeout else float("inf")
        with self._lock:
            self._held[d.job_id] = (d.stream + 1, d.entry, deadline, d.partition)

    def drop(self, job_id: str) -> None:
        """Stop renewing a job's lease (it was settled, or handed back)."""
        with self._lock:
            self._held.pop(job_id, None)
            self._lost.discard(job_id)

    async def run(self, on_lost: Callable[[str], None]) -> None:
        """Run the renewal thread; call `on_lost(job_id)` for leases another worker took."""
        stop = threading.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._thread_main, stop)
            try:
                while True:
                    await anyio.sleep(self._interval / 2)
                    with self._lock:
                        lost, self._lost = self._lost, set()
                    for job_id in lost:
                        on_lost(job_id)
            finally:
                stop.set()

    async def _thread_main(self, stop: threading.Event) -> None:
        await anyio.to_thread.run_sync(self._loop, stop, limiter=anyio.CapacityLimiter(1))

    def _loop(self, stop: threading.Event) -> None:
        driver = self._queue.sync_driver()
        try:
            while not stop.wait(self._interval):
                self._renew(driver)
        finally:
            driver.close()

    def _renew(self, driver: SyncDriver) -> None:
        now = time.monotonic()
        with self._lock:
            held = [(job_id, s, e, p) for job_id, (s, e, dl, p) in self._held.items() if dl > now]
        if not held:
            return
        try:
            lost = self._queue.extend_leases(driver, self._consumer, held)
        except StreamJobsError as exc:
            log.warning("lease renewal failed, will retry: %s", exc)
            return
        with self._lock:
            self._lost.update(job_id for job_id in lost if job_id in self._held)
