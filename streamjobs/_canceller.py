"""The canceller: blocks on the pool's control list, where cancel.lua pushes the ids of the
pool's running jobs that `cancel_job` ended, and hands each id to the pool to stop its handler.
The signal travels through Redis the moment it is given: no job's record is polled."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from ._backoff import pause
from .errors import StreamJobsError
from .redis_queue import RedisJobQueue

#: Longest single block on the control list (seconds); a push ends it at once.
WAIT = 5.0


async def run(
    queue: RedisJobQueue,
    pool_id: str,
    on_cancel: Callable[[str], None],
    *,
    partition: int = 0,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call `on_cancel(job_id)` for every job of this pool cancelled while running in
    `partition` (a pool runs one canceller per partition), until cancelled; Redis errors
    back off and are tried again."""
    task_status.started()
    failures = 0
    while True:
        try:
            job_id = await queue.wait_for_cancel(pool_id, WAIT, partition=partition)
        except StreamJobsError as exc:
            failures += 1
            await pause("waiting for cancelled jobs", exc, failures)
            continue
        failures = 0
        if job_id is not None:
            on_cancel(job_id)
