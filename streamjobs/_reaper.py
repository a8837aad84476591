"""The consumer reaper: removes from the consumer groups the consumers of pools that are gone
(no heartbeat) and hold no entry, so crashed pools leave no names behind in the groups."""

from __future__ import annotations

import logging
import random

import anyio
from anyio.abc import TaskStatus

from .errors import StreamJobsError
from .redis_queue import RedisJobQueue

log = logging.getLogger("streamjobs.worker")

#: Each pause is the interval times a factor in this range, so pools on one queue spread out.
JITTER = (0.75, 1.25)


async def run(
    queue: RedisJobQueue,
    interval: float,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Reap the consumers of gone pools every `interval` seconds (with jitter) until cancelled;
    a failed pass is logged and tried again at the next."""
    task_status.started()
    while True:
        await anyio.sleep(interval * random.uniform(*JITTER))
        try:
            removed = await queue.reap_consumers()
        except StreamJobsError as exc:
            log.warning("removing the consumers of gone pools failed: %s", exc)
            continue
        if removed:
            log.info("removed %d consumer(s) of worker pools that are gone", removed)
