"""The main job end to end: a worker pool runs jobs at every priority with live progress,
one job that succeeds on retry, one that ends in the dead-letter stream, then the metrics.

    make demo            # a throwaway redis-server
    REDIS_URL=redis://localhost:6379/0 make demo
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._redis import redis_url
from streamjobs import JobDefinition, JobPriority, JobService


class PrintingBus:
    """An event bus that prints each lifecycle event as it happens."""

    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        job = payload["job_id"][:8]
        if event_type == "job.progress":
            print(f"  {job} {payload['current']:>3}/{payload['total']} {payload['message']}")
        elif event_type == "job.retrying":
            print(f"  {job} failed ({payload['error']}); retry in {payload['delay']:.1f}s")
        else:
            extra = payload.get("error") or payload.get("priority") or payload.get("status") or ""
            print(f"  {job} {event_type:<16} {payload['handler']:<14} {extra}")


async def transcode(job: JobDefinition, progress: Any) -> dict[str, Any]:
    """Pretend to transcode a media file, reporting progress in quarters."""
    for step in range(1, 5):
        await anyio.sleep(0.05)
        await progress(step * 25, 100, f"transcoding {job.args[0]}")
    return {"file": job.args[0], "quality": job.kwargs.get("quality", "medium")}


async def flaky_upload(job: JobDefinition, progress: Any) -> str:
    """Fails on its first attempt, as a network upload might."""
    if job.attempts == 1:
        raise ConnectionError("upload endpoint timed out")
    return "uploaded"


async def corrupt_file(job: JobDefinition, progress: Any) -> None:
    """Fails every time: ends in the dead-letter stream."""
    raise ValueError("cannot decode frame 0")


async def main(url: str) -> None:
    async with JobService(url, name="demo", event_bus=PrintingBus()) as svc:
        for name, fn in [("transcode", transcode), ("flaky_upload", flaky_upload),
                         ("corrupt_file", corrupt_file)]:  # fmt: skip
            svc.register_handler(name, fn)
        print(f"streamjobs demo on {url}\n")
        ids = [
            await svc.submit_job("transcode", args=(f"{p.name.lower()}.mkv",), priority=p)
            for p in JobPriority
        ]
        ids.append(await svc.submit_job("flaky_upload", retry_delay=0.3))
        ids.append(await svc.submit_job("corrupt_file", max_retries=1, retry_delay=0.2))
        await svc.start_workers(2)
        for job_id in ids:
            await svc.wait_for_result(job_id, timeout=30)
        await report(svc)


async def report(svc: JobService) -> None:
    metrics = await svc.get_metrics()
    queue, by_priority = dict(metrics["queue"]), metrics["queue"]["by_priority"]
    del queue["by_priority"]
    print("\nmetrics")
    print("  queue:   ", ", ".join(f"{k}={v}" for k, v in queue.items()))
    print("  pending: ", ", ".join(f"{k}={v}" for k, v in by_priority.items()))
    print("  workers: ", ", ".join(f"{k}={v}" for k, v in metrics["workers"].items()))
    for dead in await svc.get_dead_letters():
        where = f"{dead.id[:8]} ({dead.handler}, {dead.attempts} attempts)"
        print(f"  dead letter {where}: {dead.error}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the event bus above narrates instead
    with redis_url() as url:
        anyio.run(main, url)
