"""Workers of a pool: slots that each run one job at a time, reserved before any read so the
pool never takes more jobs than it can start (no hoarding)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio


@dataclass
class Worker:
    """One slot of a pool and its counters."""

    id: str
    status: str = "idle"  # idle, reserved (held for a read), busy
    retiring: bool = False  # leaves the pool once its read or job ends
    jobs_completed: int = 0
    jobs_failed: int = 0
    job_id: str | None = None
    started: float = field(default_factory=time.time)

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
            self._changed.set()
            self._changed = anyio.Event()

    async def _wait_change(self) -> None:
        self._waiters += 1
        try:
            await self._changed.wait()
        finally:
            self._waiters -= 1

    def resize(self, count: int) -> None:
        """Grow to `count` workers, or retire the surplus (busy ones once their job ends)."""
        active = [w for w in self.workers if not w.retiring]
        for _ in range(count - len(active)):
            self._next += 1
            self.workers.append(Worker(f"{self._pool_id}-{self._next}"))
        order = {"idle": 0, "reserved": 1, "busy": 2}
        surplus = sorted(active, key=lambda w: order[w.status])[: max(len(active) - count, 0)]
        for worker in surplus:
            worker.retiring = True
            if worker.status == "idle":
                self.workers.remove(worker)
        self._notify()

    @property
    def listed(self) -> list[Worker]:
        """Workers as the registry shows them: retiring ones only while they hold a job."""
        return [w for w in self.workers if not w.retiring or w.job_id]

    @property
    def idle(self) -> list[Worker]:
        """Workers free to take a job."""
        return [w for w in self.workers if w.status == "idle" and not w.retiring]

    async def reserve(self, *, wait: bool = True) -> list[Worker]:
        """Reserve every idle worker, waiting for at least one unless `wait` is False."""
        while wait and not self.idle:
            await self._wait_change()
        taken = self.idle
        for worker in taken:
            worker.status = "reserved"
        return taken

    def give_back(self, workers: list[Worker]) -> None:
        """Return reserved workers that got no job."""
        for worker in workers:
            self._release(worker)
        self._notify()

    def _release(self, worker: Worker) -> None:
        worker.job_id = None
        if worker.retiring:
            self.workers.remove(worker)
        else:
            worker.status = "idle"

    def occupy(self, worker: Worker, job_id: str) -> None:
        """A reserved worker starts a job."""
        worker.status, worker.job_id = "busy", job_id

    def finish(self, worker: Worker, *, completed: bool, failed: bool) -> None:
        """A worker's job ended; a retiring worker leaves the pool."""
        worker.jobs_completed += completed
        worker.jobs_failed += failed
        self._release(worker)
        self._notify()

    async def wait_all_idle(self) -> None:
        """Return once no worker holds a job."""
        while any(w.job_id for w in self.workers):
            await self._wait_change()
