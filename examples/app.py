"""A media-processing app in the guide's spirit: the handlers `streamjobs worker` runs.

    streamjobs worker examples.app:service --concurrency 4
    streamjobs submit process_media --args '[123]' --kwargs '{"quality": "high"}' --priority high

Handlers:
- `process_media` (async): probe, transcode, package, reporting progress at each step;
  an unknown quality is a permanent failure (`JobFailed`: never retried).
- `fetch_metadata` (async, flaky): the metadata service times out now and then
  (`fail_rate`, default 0.5), so the job retries with backoff and may end as a dead letter.
- `make_thumbnails` (plain def, run in a worker thread): CPU-bound, with progress.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import anyio

from streamjobs import JobDefinition, JobFailed, JobService

QUALITIES = {"low": 480, "medium": 720, "high": 1080}

#: Seconds each step of `process_media` takes; $MEDIA_STEP_SECONDS makes the demo faster.
STEP = float(os.environ.get("MEDIA_STEP_SECONDS", "0.5"))


async def process_media(job: JobDefinition, progress_callback: Any) -> dict[str, Any]:
    """Transcode one media item (args: media_id; kwargs: quality, seconds per step)."""
    media_id = job.args[0] if job.args else 0
    quality = job.kwargs.get("quality", "medium")
    if quality not in QUALITIES:
        raise JobFailed(f"unsupported quality {quality!r} (one of {', '.join(QUALITIES)})")
    step = float(job.kwargs.get("seconds", STEP))
    steps = ("probing", "transcoding", "packaging")
    for done, name in enumerate(steps):
        await progress_callback(done, len(steps), f"{name} media {media_id}")
        await anyio.sleep(step)
    await progress_callback(len(steps), len(steps), "Complete")
    return {"media_id": media_id, "height": QUALITIES[quality], "file": f"{media_id}-{quality}.mp4"}


async def fetch_metadata(job: JobDefinition, progress_callback: Any) -> dict[str, Any]:
    """Look up a title's metadata from a service that sometimes times out (kwargs: fail_rate)."""
    await anyio.sleep(0.1)
    if random.random() < float(job.kwargs.get("fail_rate", 0.5)):
        raise ConnectionError("metadata service timed out")
    title = str(job.args[0]) if job.args else "untitled"
    return {"title": title, "year": 1999 + len(title) % 25}


def make_thumbnails(job: JobDefinition, progress: Any) -> list[str]:
    """Render `count` thumbnails (kwargs: count, default 5): CPU work, so a plain def."""
    count = int(job.kwargs.get("count", 5))
    digests = []
    for i in range(count):
        digests.append(hashlib.sha256(f"{job.id}:{i}".encode() * 20_000).hexdigest()[:12])
        progress(i + 1, count, f"thumbnail {i + 1} of {count}")
    return digests


def create_service() -> JobService:
    """The app's JobService ($REDIS_URL, queue `default`) with every handler registered."""
    svc = JobService()
    svc.register_handler("process_media", process_media)
    svc.register_handler("fetch_metadata", fetch_metadata)
    svc.register_handler("make_thumbnails", make_thumbnails)
    return svc


service = create_service()
