"""The main job end to end: a worker pool runs jobs at every priority, each a live progress
bar, one job that succeeds on retry, one that ends in the dead-letter stream, then the metrics
and the command that shows the same jobs in the dashboard.

    make demo            # a throwaway redis-server
    REDIS_URL=redis://localhost:6379/0 make demo
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._redis import redis_url
from streamjobs import JobDefinition, JobPriority, JobService


class ProgressBars:
    """An event bus that shows one live progress bar per running job, and prints each
    retry, failure and dead letter above the bars as it happens."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bars: dict[str, TaskID] = {}

    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        job, bars = payload["job_id"], self.bars
        label = f"{job[:8]} {payload.get('handler', ''):<12}"
        if event_type == "job.started":
            name = f"{label} {payload.get('priority') or '':<8} #{payload['attempt']}"
            bars[job] = self.progress.add_task(name, total=None, status="")
        elif event_type == "job.progress" and job in bars:
            self.progress.update(bars[job], completed=payload["current"], total=payload["total"],
                                 status=payload["message"] or "")  # fmt: skip
        elif event_type in ("job.completed", "job.retrying", "job.failed") and job in bars:
            bar = bars.pop(job)
            done = event_type == "job.completed"
            self.progress.update(bar, total=1, completed=1 if done else 0,
                                 status="done" if done else payload.get("error", ""))  # fmt: skip
            self.progress.stop_task(bar)
        if event_type == "job.retrying":
            self.progress.console.print(f"  {label} failed ({payload['error']}); retry in "
                                        f"{payload['delay']:.1f}s")  # fmt: skip
        elif event_type == "job.dead_letter":
            self.progress.console.print(f"  {label} dead-lettered: {payload['error']}")


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
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=20), TaskProgressColumn(),
               TextColumn("{task.fields[status]}"))  # fmt: skip
    progress = Progress(*columns, console=Console(highlight=False))
    bars = ProgressBars(progress)
    async with JobService(url, name="demo", event_bus=bars) as svc:
        for name, fn in [("transcode", transcode), ("flaky_upload", flaky_upload),
                         ("corrupt_file", corrupt_file)]:  # fmt: skip
            svc.register_handler(name, fn)
        print(f"streamjobs demo on {url}\n")
        with progress:
            ids = [
                await svc.submit_job("transcode", args=(f"{p.name.lower()}.mkv",), priority=p)
                for p in JobPriority
            ]
            ids.append(await svc.submit_job("flaky_upload", retry_delay=0.3))
            ids.append(await svc.submit_job("corrupt_file", max_retries=1, retry_delay=0.2))
            await svc.start_workers(2)
            for job_id in ids:
                await svc.wait_for_result(job_id, timeout=30)
            with anyio.move_on_after(2):  # the last events reach the bars a moment later
                while bars.bars:  # noqa: ASYNC110 - the bus sets no event for it
                    await anyio.sleep(0.02)
        await report(svc)
    dashboard = url if os.environ.get("REDIS_URL") else "<your REDIS_URL>"
    print("\nsee these jobs in the dashboard (the throwaway server is gone: run the demo with "
          "REDIS_URL set first):" if dashboard != url else "\nsee these jobs in the dashboard:")
    print(f"  streamjobs web --redis-url {dashboard} --queue demo   # then open "
          "http://127.0.0.1:8080")  # fmt: skip


async def report(svc: JobService) -> None:
    metrics = await svc.get_metrics()
    queue = {k: v for k, v in metrics["queue"].items() if not isinstance(v, dict)}
    by_priority = metrics["queue"]["by_priority"]
    print(f"\nmetrics (served by {svc.queue.topology})")
    print("  queue:   ", ", ".join(f"{k}={v}" for k, v in queue.items()))
    print("  pending: ", ", ".join(f"{k}={v}" for k, v in by_priority.items()))
    print("  workers: ", ", ".join(f"{k}={v}" for k, v in metrics["workers"].items()))
    for dead in await svc.get_dead_letters():
        where = f"{dead.id[:8]} ({dead.handler}, {dead.attempts} attempts)"
        print(f"  dead letter {where}: {dead.error}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the progress bars narrate instead
    with redis_url() as url:
        anyio.run(main, url)
