"""An asyncio app, in the user guide's style: `initialize()`, `start_workers()`, `close()`.

    REDIS_URL=redis://localhost:6379/0 python examples/asyncio_app.py

On asyncio streamjobs uses redis-py's asyncio client (the faster driver). `async with
JobService(...)` and `await tg.start(svc.run_workers, n)` work here too, as under trio.
"""

from __future__ import annotations

import asyncio
import os

from streamjobs import JobDefinition, JobPriority, JobResult, JobService


async def process_media(job: JobDefinition, progress_callback: object) -> dict[str, object]:
    """The guide's handler: read args and kwargs, report progress, return a result."""
    media_id, quality = job.args[0], job.kwargs.get("quality", "medium")
    await progress_callback(0, 100, "Starting...")  # type: ignore[operator]
    await asyncio.sleep(0.01)
    await progress_callback(100, 100, "Complete")  # type: ignore[operator]
    return {"media_id": media_id, "quality": quality}


async def run(
    redis_url: str | None = None, *, queue_name: str = "default", jobs: int = 5
) -> list[JobResult]:
    """Start 4 workers, submit `jobs` jobs, wait for every result, close."""
    job_service = JobService(redis_url, name=queue_name)
    await job_service.initialize()
    try:
        job_service.register_handler("process_media", process_media)
        await job_service.start_workers(count=4)
        ids = [
            await job_service.submit_job(
                "process_media", args=(i,), kwargs={"quality": "high"}, priority=JobPriority.HIGH
            )
            for i in range(jobs)
        ]
        return [await job_service.wait_for_result(job_id, timeout=30) for job_id in ids]
    finally:
        await job_service.close()


async def main() -> None:
    for result in await run(os.environ.get("REDIS_URL")):
        print(result.job_id, result.status.value, result.result, f"{result.duration or 0:.3f}s")


if __name__ == "__main__":
    asyncio.run(main())
