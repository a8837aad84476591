"""streamjobs with every job carrying a limit key that has room: eight tenants, each with a
concurrency limit far above what runs, so every start is checked and admitted and every
outcome gives a slot back, and the tenants take turns (fair service). Run beside plain
streamjobs, it shows what the limit check and the turns cost.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from streamjobs import JobService

from . import _probe
from ._peer import JOB_RETRIES, JOB_TIMEOUT_S
from .streamjobs_runner import StreamjobsPeer, serve

TENANTS = 8
ROOM = 1_000_000  # each tenant's concurrency limit: never reached


def tenant(i: int) -> str:
    return f"tenant-{i % TENANTS}"


class LimitedPeer(StreamjobsPeer):
    name = "streamjobs_limited"
    settings = {**StreamjobsPeer.settings, "limits": f"{TENANTS} keys, concurrency {ROOM}"}

    async def open(self) -> None:
        self.svc = JobService(redis_url=self.url)
        await self.svc.initialize()
        for n in range(TENANTS):
            await self.svc.set_limit(tenant(n), concurrency=ROOM)

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        await self.svc.submit_job(
            "job", args=(i, sleep), timeout=JOB_TIMEOUT_S, max_retries=JOB_RETRIES,
            limit_key=tenant(i),
        )  # fmt: skip

    async def submit_bulk(self, ids: Sequence[int]) -> None:
        await self.svc.submit_many(
            [
                {
                    "handler": "job",
                    "args": (i, 0.0),
                    "timeout": JOB_TIMEOUT_S,
                    "max_retries": JOB_RETRIES,
                    "limit_key": tenant(i),
                }
                for i in ids
            ]
        )

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "benchpeers.streamjobs_limited_runner"]


PEER = LimitedPeer


if __name__ == "__main__":
    asyncio.run(serve(JobService(redis_url=_probe.redis_url())))
