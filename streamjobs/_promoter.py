"""The promoter: moves delayed jobs (scheduled, or waiting out a retry's backoff) to their
streams when due, sleeping until the next is due or a submit wakes it."""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus

from ._backoff import pause
from .errors import StreamJobsError
from .redis_queue import RedisJobQueue


async def run(
    queue: RedisJobQueue,
    max_sleep: float,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Promote due jobs until cancelled, never sleeping longer than `max_sleep` seconds
    without a look; Redis errors back off and are tried again."""
    task_status.started()
    failures = 0
    while True:
        try:
            wait = await queue.promote()
            if wait != 0:
                await queue.wait_for_wake(max_sleep if wait is None else min(wait, max_sleep))
            failures = 0
        except StreamJobsError as exc:
            failures += 1
            await pause("promoting delayed jobs", exc, failures)
