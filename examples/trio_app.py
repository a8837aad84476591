"""A trio app: the service's lifetime is an `async with`, its workers run in your nursery.

    pip install 'streamjobs[trio]'
    REDIS_URL=redis://localhost:6379/0 python examples/trio_app.py

Under trio streamjobs talks to Redis through coredis (the `trio` extra) and every background
task lives in a nursery: `await nursery.start(svc.run_workers, n)` returns once the workers
are reading, and leaving the nursery (or cancelling it) stops them; jobs still running then
go back to the queue for another worker.
"""

from __future__ import annotations

import os

import trio

from streamjobs import JobDefinition, JobResult, JobService


async def resize_image(job: JobDefinition, progress_callback: object) -> dict[str, object]:
    """A stand-in for real work: report progress, sleep, return a JSON-able result."""
    image_id, width = job.args[0], job.kwargs.get("width", 640)
    await progress_callback(0, 1, "resizing")  # type: ignore[operator]
    await trio.sleep(0.01)
    await progress_callback(1, 1, "done")  # type: ignore[operator]
    return {"image": image_id, "width": width}


async def run(
    redis_url: str | None = None, *, queue_name: str = "default", jobs: int = 5
) -> list[JobResult]:
    """Start 4 workers in a nursery, submit `jobs` jobs, wait for every result, stop."""
    async with JobService(redis_url, name=queue_name) as svc, trio.open_nursery() as nursery:
        svc.register_handler("resize_image", resize_image)
        await nursery.start(svc.run_workers, 4)
        ids = [
            await svc.submit_job("resize_image", args=(i,), kwargs={"width": 320})
            for i in range(jobs)
        ]
        results = [await svc.wait_for_result(job_id, timeout=30) for job_id in ids]
        nursery.cancel_scope.cancel()  # stop the workers: we are done
    return results


async def main() -> None:
    for result in await run(os.environ.get("REDIS_URL")):
        print(result.job_id, result.status.value, result.result, f"{result.duration or 0:.3f}s")


if __name__ == "__main__":
    trio.run(main)
