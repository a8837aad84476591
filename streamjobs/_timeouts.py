"""Job timeouts: one timer for the pool, asleep until the soonest deadline of the jobs running,
costs less per job than a deadline scope each; with equal timeouts a new job's deadline is
never the soonest, so it wakes nothing."""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio


class TimeoutWatch:
    """Calls `on_expired(job_id)` for each running job that reaches its deadline."""

    def __init__(self, on_expired: Callable[[str], None]) -> None:
        self._on_expired = on_expired
        self._deadlines: dict[str, float] = {}  # running jobs' timeouts, on anyio's clock
        self._until = math.inf  # when the watch wakes next
        self._sooner: anyio.Event | None = None  # set: a deadline came before _until

    def limit(self, job_id: str, due: float) -> None:
        """Expire `job_id` at `due` (anyio's clock) unless forgotten first."""
        if due < math.inf:
            self._deadlines[job_id] = due
            if due < self._until and self._sooner is not None:
                self._until = due
                self._sooner.set()

    def forget(self, job_id: str) -> None:
        """The job ended: nothing expires it any more."""
        self._deadlines.pop(job_id, None)

    async def run(self) -> None:
        """Expire jobs at their deadlines until cancelled."""
        self._sooner = anyio.Event()
        while True:
            now = anyio.current_time()
            for job_id, due in list(self._deadlines.items()):
                if due <= now:
                    del self._deadlines[job_id]
                    self._on_expired(job_id)
            self._until = min(self._deadlines.values(), default=math.inf)
            if self._sooner.is_set():  # the next wake-up needs a fresh event
                self._sooner = anyio.Event()
            with anyio.move_on_after(self._until - now):
                await self._sooner.wait()
