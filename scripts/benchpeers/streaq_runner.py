"""streaq: producer via ``task.enqueue`` / ``Worker.enqueue_many``, worker via ``streaq`` CLI."""

from __future__ import annotations

from collections.abc import Sequence

from streaq import Worker

from . import _probe
from ._peer import JOB_RETRIES, JOB_TIMEOUT_S, Peer

CONCURRENCY = 100

worker = Worker(redis_url=_probe.redis_url(), concurrency=CONCURRENCY)


@worker.task(name="job", timeout=JOB_TIMEOUT_S, max_tries=JOB_RETRIES + 1, silent=True)
async def job(i: int, sleep: float) -> None:
    await _probe.record_async(i, sleep)


class StreaqPeer(Peer):
    name = "streaq"
    dist = "streaq"
    has_bulk = True
    settings = {
        "cli": "streaq run benchpeers.streaq_runner:worker",
        "concurrency": CONCURRENCY,
        "timeout_s": JOB_TIMEOUT_S,
        "max_tries": JOB_RETRIES + 1,
        "idle_timeout_s": "default (60)",
        "silent": True,
        "bulk": "Worker.enqueue_many",
    }

    async def open(self) -> None:
        self.worker = Worker(redis_url=self.url)
        self.job = self.worker.task(name="job", timeout=JOB_TIMEOUT_S, max_tries=JOB_RETRIES + 1)(
            job.fn
        )
        await self.worker.__aenter__()

    async def close(self) -> None:
        await self.worker.__aexit__(None, None, None)

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        await self.job.enqueue(i, sleep)

    async def submit_bulk(self, ids: Sequence[int]) -> None:
        await self.worker.enqueue_many([self.job.enqueue(i, 0.0) for i in ids])

    def worker_command(self) -> list[str]:
        return ["streaq", "run", "benchpeers.streaq_runner:worker"]


PEER = StreaqPeer
