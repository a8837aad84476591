"""The scheduler task every worker pool runs: fires due schedules, by Redis' clock.

No pool is special: each looks (look_schedules.lua) at least once a LOOK_MS, or when the next
schedule falls due, and tries to fire what is due; fire_schedule.lua's compare-and-set lets
exactly one attempt per tick through. The pool's own clock only measures how long to sleep.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import TaskStatus
from cronsim import CronSimError

from . import _codec, _schedules
from ._backoff import pause
from .errors import StreamJobsError
from .redis_queue import RedisJobQueue

log = logging.getLogger("streamjobs.scheduler")


async def run(
    queue: RedisJobQueue, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Fire due schedules until cancelled; Redis errors back off and are tried again."""
    task_status.started()
    failures = 0
    while True:
        try:
            wait = await look(queue)
            failures = 0
        except StreamJobsError as exc:
            failures += 1
            await pause("firing schedules", exc, failures)
            continue
        await anyio.sleep(wait)


async def look(queue: RedisJobQueue) -> float:
    """Fire every schedule due now; returns the seconds to sleep before the next look."""
    reply = await queue.run_schedules("look_schedules", _schedules.FIRE_BATCH, _schedules.GAP_MS)
    now, back, due, wait_ms = int(reply[0]), int(reply[1]), reply[2], int(reply[3])
    stuck = False  # a schedule that cannot be fired stays due: look again only later
    for name, flat in due:
        stuck |= await fire(queue, str(name), _codec.pairs(flat), now, back) is None
    if stuck:
        return _schedules.LOOK_MS / 1000
    if len(due) >= _schedules.FIRE_BATCH:
        return 0.0
    if wait_ms < 0:
        return _schedules.LOOK_MS / 1000
    return min(_schedules.LOOK_MS, wait_ms + 1) / 1000


async def fire(queue: RedisJobQueue, name: str, record: dict[str, str], now: int, back: int) -> Any:
    """Plan one due schedule's ticks and try to fire them (one pool's attempt succeeds)."""
    try:
        timing = _schedules.timing_from(record)
        stored = int(record["next"])
        plan = _schedules.plan(timing, stored, now, back, record.get("misfire", "coalesce"))
    except (KeyError, ValueError, CronSimError, StopIteration) as exc:
        log.error("schedule %s cannot be fired (%r); skipping it", name, exc)
        return None
    reply = await queue.run_schedules(
        "fire_schedule", name, "tick", stored, plan.next, plan.dropped, *plan.ticks
    )
    if ids := _schedules.fired(reply):
        log.info("schedule %s fired: %s", name, ", ".join(ids))
    return reply
