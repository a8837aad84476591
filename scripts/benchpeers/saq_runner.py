"""SAQ: producer via ``Queue.enqueue``, worker via the ``saq`` CLI and a settings dict."""

from __future__ import annotations

from typing import Any

from saq import Queue

from . import _probe
from ._peer import JOB_RETRIES, JOB_TIMEOUT_S, Peer

CONCURRENCY = 100


async def job(ctx: dict[str, Any], *, i: int, sleep: float) -> None:
    await _probe.record_async(i, sleep)


settings = {
    "queue": Queue.from_url(_probe.redis_url()),
    "functions": [job],
    "concurrency": CONCURRENCY,
}


class SaqPeer(Peer):
    name = "saq"
    dist = "saq"
    settings = {
        "cli": "saq benchpeers.saq_runner.settings --quiet",
        "concurrency": CONCURRENCY,
        "job_timeout_s": JOB_TIMEOUT_S,
        "retries": JOB_RETRIES + 1,
        "sweep_s": "default (60)",
    }

    async def open(self) -> None:
        self.queue = Queue.from_url(self.url)
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        kwargs: dict[str, Any] = {"i": i, "sleep": sleep}
        await self.queue.enqueue("job", timeout=JOB_TIMEOUT_S, retries=JOB_RETRIES + 1, **kwargs)

    def worker_command(self) -> list[str]:
        return ["saq", "benchpeers.saq_runner.settings", "--quiet"]


PEER = SaqPeer
