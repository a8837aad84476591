"""Workers of a pool: long-lived tasks that each run one job at a time, fed through their own
inbox. The reader reserves idle workers before it reads, so the pool never takes more jobs
than it can start (no hoarding)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .redis_queue import Delivery


class Inbox:
    """A worker's jobs waiting to run: a deque and an event to wake the worker, which costs a
    busy pool far less per job than a memory object stream (no checkpoints, no waiter books).
    Iterating ends once the inbox is closed and empty."""

    def __init__(self) -> None:
        self._items: deque[Delivery] = deque()
        self._wake: anyio.Event | None = None
        self.closed = False

    def put(self, d: Delivery) -> None:
        if self.closed:
            raise anyio.ClosedResourceError
        self._items.append(d)
        if self._wake is not None:
            self._wake.set()

    @property
    def exhausted(self) -> bool:
        """Closed, and every job in it taken."""
        return self.closed and not self._items

    def close(self) -> None:
        self.closed = True
        if self._wake is not None:
            self._wake.set()

    def __aiter__(self) -> Inbox:
        return self

    async def __anext__(self) -> Delivery:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._wake = anyio.Event()
            try:
                await self._wake.wait()
            finally:
                self._wake = None
        return self._items.popleft()


@dataclass(eq=False)
class Worker:
    """One worker of a pool: its inbox and its counters."""

    id: str
    status: str = "idle"  # idle, reserved (held for a read), busy
    retiring: bool = False  # leaves the pool once its read or job ends
    jobs_completed: int = 0
    jobs_failed: int = 0
    job_id: str | None = None
    started: float = field(default_factory=time.time)
    inbox: Inbox | None = None  # None once closed

    def as_record(self) -> dict[str, object]:
        """The worker as the heartbeat registry stores it."""
        return {
            "id": self.id, "status": "busy" if self.job_id else "idle",
            "completed": self.jobs_completed, "failed": self.jobs_failed, "job": self.job_id,
            "started": self.started,
        }  # fmt: skip


class Slots:
    """The workers of one pool; `reserve()` waits for idle ones and holds them for a read."""

    def __init__(self, pool_id: str) -> None:
        self._pool_id = pool_id
        self._next = 0
        self.workers: list[Worker] = []
        self._changed = anyio.Event()
        self._waiters = 0

    def _notify(self) -> None:
        if self._waiters:
            self._changed.set()  # a fresh Event is made by the next wait, not per change

    async def _wait_change(self) -> None:
        if self._changed.is_set():
            self._changed = anyio.Event()
        self._waiters += 1
        try:
            await self._changed.wait()
        finally:
            self._waiters -= 1

    def resize(self, count: int) -> list[Worker]:
        """Grow to `count` workers (returned, for the pool to start), or retire the surplus:
        idle ones at once, reserved and busy ones once their read or job ends."""
        active = [w for w in self.workers if not w.retiring]
        added = []
        for _ in range(count - len(active)):
            self._next += 1
            added.append(Worker(f"{self._pool_id}-{self._next}"))
        self.workers.extend(added)
        order = {"idle": 0, "reserved": 1, "busy": 2}
        surplus = sorted(active, key=lambda w: order[w.status])[: max(len(active) - count, 0)]
        for worker in surplus:
            worker.retiring = True
            if worker.status == "idle":
                self._remove(worker)
        self._notify()
        return added

    def open_inbox(self, worker: Worker) -> Inbox:
        """A worker's inbox; its task serves it until it closes."""
        worker.inbox = Inbox()
        return worker.inbox

    def _remove(self, worker: Worker) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        self._close(worker)

    @staticmethod
    def _close(worker: Worker) -> None:
        """Close the inbox: the worker's task ends once it is empty."""
        if worker.inbox is not None:
            worker.inbox.close()
        worker.inbox = None

    @property
    def listed(self) -> list[Worker]:
        """Workers as the registry shows them: retiring ones only while they hold a job."""
        return [w for w in self.workers if not w.retiring or w.job_id]

    @property
    def idle(self) -> list[Worker]:
        """Workers free to take a job."""
        return [w for w in self.workers if w.status == "idle" and not w.retiring and w.inbox]

    async def reserve(self) -> list[Worker]:
        """Reserve idle workers, waiting for at least one; at most half the pool, so that one
        half's jobs run while the other half's are being read (no lockstep)."""
        while not self.idle:
            await self._wait_change()
        half = max(1, (sum(1 for w in self.workers if not w.retiring) + 1) // 2)
        taken = self.idle[:half]
        for worker in taken:
            worker.status = "reserved"
        return taken

    def give_back(self, workers: list[Worker]) -> None:
        """Return reserved workers that got no job."""
        for worker in workers:
            self._release(worker)
        self._notify()

    def hand(self, worker: Worker, d: Delivery) -> None:
        """Give a reserved worker its job."""
        assert worker.inbox is not None
        worker.status, worker.job_id = "busy", d.job_id
        worker.inbox.put(d)

    def _release(self, worker: Worker) -> None:
        worker.job_id = None
        if worker.retiring:
            self._remove(worker)
        else:
            worker.status = "idle"

    def finish(self, worker: Worker) -> None:
        """A worker's job ended (its outcome may still be on its way to Redis)."""
        self._release(worker)
        self._notify()

    def close(self) -> None:
        """Close every inbox: idle worker tasks end (closing twice is harmless)."""
        for worker in self.workers:
            self._close(worker)

    async def wait_all_idle(self) -> None:
        """Return once no worker holds a job."""
        while any(w.job_id for w in self.workers):
            await self._wait_change()
