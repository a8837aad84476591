"""A worker pool in a process of its own, for the limit tests: `python -m tests._limit_pool
URL QUEUE WORKERS SECONDS`. Its handlers record in Redis what they see: `guarded` counts
itself in and out of `<queue>:running` and pushes the count it saw on entering to
`<queue>:seen`; `hold` pushes `held` to `<queue>:seen` then sleeps a minute."""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import redis

from streamjobs import AsyncWorkerPool, JobDefinition, JobService, RedisJobQueue
from tests.conftest import FAST


def handlers(url: str, name: str) -> dict[str, Any]:
    """The handlers, over one blocking client (they run in threads)."""
    client = redis.Redis.from_url(url, decode_responses=True)

    def guarded(job: JobDefinition, progress: Any) -> None:
        client.rpush(f"{name}:seen", client.incr(f"{name}:running"))
        time.sleep(0.02)
        client.decr(f"{name}:running")

    def hold(job: JobDefinition, progress: Any) -> None:
        client.rpush(f"{name}:seen", "held")
        time.sleep(60)

    return {"guarded": guarded, "hold": hold}


async def main(url: str, name: str, workers: int, seconds: float) -> None:
    queue = RedisJobQueue(url, name=name)
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST)) as svc:
        for handler, fn in handlers(url, name).items():
            svc.register_handler(handler, fn)
        with anyio.move_on_after(seconds):
            await svc.run_workers(workers)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
