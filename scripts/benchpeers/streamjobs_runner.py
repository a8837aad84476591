"""streamjobs, through the public API of DESIGN.md (``JobService``).

Worker: ``python -m benchpeers.streamjobs_runner`` runs one process with ``start_workers(N)``.
Bulk: ``JobService.submit_many`` (not in DESIGN.md yet: the call shape below is our best guess
and is the one place to adjust once the library settles it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from streamjobs import JobService

from . import _probe
from ._peer import JOB_RETRIES, JOB_TIMEOUT_S, Peer

CONCURRENCY = 100
WORKER_LIFETIME_S = 3600  # the harness kills the worker long before this


async def job(definition: Any, progress_callback: Any) -> None:
    i, sleep = definition.args
    await _probe.record_async(int(i), float(sleep))


class StreamjobsPeer(Peer):
    name = "streamjobs"
    dist = "streamjobs"
    has_bulk = True
    settings = {
        "cli": "python -m benchpeers.streamjobs_runner",
        "workers": CONCURRENCY,
        "timeout_s": JOB_TIMEOUT_S,
        "max_retries": JOB_RETRIES,
        "bulk": "JobService.submit_many",
    }

    async def open(self) -> None:
        self.svc = JobService(redis_url=self.url)
        await self.svc.initialize()

    async def close(self) -> None:
        await self.svc.close()

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        await self.svc.submit_job(
            "job", args=(i, sleep), timeout=JOB_TIMEOUT_S, max_retries=JOB_RETRIES
        )

    async def submit_bulk(self, ids: Sequence[int]) -> None:
        submit_many = getattr(self.svc, "submit_many", None)
        if submit_many is None:
            raise NotImplementedError("JobService.submit_many is not there yet")
        await submit_many(
            [
                {
                    "handler": "job",
                    "args": (i, 0.0),
                    "timeout": JOB_TIMEOUT_S,
                    "max_retries": JOB_RETRIES,
                }
                for i in ids
            ]
        )

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "benchpeers.streamjobs_runner"]


PEER = StreamjobsPeer


async def serve(svc: JobService) -> None:
    """A worker process: `svc` runs the benchmark's job until the harness kills it."""
    async with svc:
        svc.register_handler("job", job)
        await svc.start_workers(CONCURRENCY)
        await asyncio.sleep(WORKER_LIFETIME_S)


if __name__ == "__main__":
    asyncio.run(serve(JobService(redis_url=_probe.redis_url())))
