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
    partition: int = 0,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Promote a partition's due jobs until cancelled (a pool runs one promoter per
    partition), never sleeping longer than `max_sleep` seconds without a look; Redis errors
    back off and are tried again."""
    task_status.started()
    failures = 0
    while True:
        try:
            wait = await queue.promote(partition=partition)
            if wait != 0:
                sleep = max_sleep if wait is None else min(wait, max_sleep)
                await queue.wait_for_wake(sleep, partition=partition)
            failures = 0
        except StreamJobsError as exc:
            failures += 1
            await pause("promoting delayed jobs", exc, failures)
