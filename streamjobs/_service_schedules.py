"""The schedule calls of `JobService` (firing them is the worker pools' part: `_scheduler`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from . import _schedules
from ._schedules import ScheduleInfo
from .models import JobPriority
from .redis_queue import RedisJobQueue


class ScheduleCalls:
    """Create, read, pause, resume, trigger and remove the schedules of `_queue`."""

    _queue: RedisJobQueue

    async def schedule(
        self,
        name: str,
        handler: str,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        priority: JobPriority | int | str = JobPriority.NORMAL,
        timeout: float | None = 300,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        misfire: str = "coalesce",
        max_lateness: float | timedelta | None = None,
        overlap: bool = False,
    ) -> ScheduleInfo:
        """Run `handler` periodically: by `cron` (5 fields, or 6 with seconds first, in
        time zone `tz`) or `every` seconds (ticks at whole multiples since the epoch). Every
        worker pool of the queue fires it, each tick once, as job `sched:<name>:<tick ms>`.
        Ticks missed while no pool ran: `misfire` "coalesce" runs the newest one, "skip"
        none, "all" each (the newest 100; needs `overlap=True`). A run later than
        `max_lateness` seconds is dropped; with `overlap=False` a tick is skipped while the
        last run is pending or running. Calling it again with the same name updates the
        schedule (a paused one stays paused; an unchanged timing keeps its next tick).
        Invalid input raises InvalidJobError naming the field, writing nothing."""
        new = _schedules.new_schedule(
            name, handler, cron=cron, every=every, tz=tz, args=args, kwargs=kwargs,
            priority=priority, timeout=timeout, max_retries=max_retries,
            retry_delay=retry_delay, retry_backoff=retry_backoff, misfire=misfire,
            max_lateness=max_lateness, overlap=overlap, max_payload=self._queue.max_payload,
        )  # fmt: skip
        now, _ = _schedules.parse_read(await self._queue.run_schedules("get_schedules", name))
        await self._queue.run_schedules("schedule", *new.put_args(now))
        info = await self.get_schedule(new.name)
        assert info is not None
        return info

    async def get_schedules(self) -> list[ScheduleInfo]:
        """Every schedule of this queue by name, with its next five fire times."""
        _, found = _schedules.parse_read(await self._queue.run_schedules("get_schedules"))
        return [_schedules.info(name, found[name]) for name in sorted(found)]

    async def get_schedule(self, name: str) -> ScheduleInfo | None:
        """One schedule, or None when there is none by that name."""
        _, found = _schedules.parse_read(await self._queue.run_schedules("get_schedules", name))
        return _schedules.info(name, found[name]) if name in found else None

    async def pause_schedule(self, name: str) -> bool:
        """Stop a schedule firing until resumed; False when unknown or already paused."""
        return int(await self._queue.run_schedules("pause_schedule", name)) == 1

    async def resume_schedule(self, name: str) -> bool:
        """Fire a paused schedule again from its next tick (the ticks it was paused over do
        not run); False when unknown or not paused."""
        now, found = _schedules.parse_read(
            await self._queue.run_schedules("get_schedules", name)
        )
        if name not in found:
            return False
        first = _schedules.next_after(_schedules.timing_from(found[name]), now)
        return int(await self._queue.run_schedules("resume_schedule", name, first)) == 1

    async def trigger_schedule(self, name: str) -> str | None:
        """Queue one run of a schedule now, paused or not; its job id, or None when there
        is no such schedule. Its next tick stays as it was."""
        reply = await self._queue.run_schedules("fire_schedule", name, "now", "", "", 0)
        ids = _schedules.fired(reply)
        return ids[0] if ids else None

    async def unschedule(self, name: str) -> bool:
        """Delete a schedule (runs already queued stay); False when there was none."""
        return int(await self._queue.run_schedules("unschedule", name)) == 1
