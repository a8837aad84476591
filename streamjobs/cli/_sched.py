"""`streamjobs schedules list|pause|resume|trigger|remove`: look at and steer schedules."""

from __future__ import annotations

from ..service import JobService
from ._common import CliError, console, print_json


async def list_schedules(svc: JobService, as_json: bool) -> int:
    """Every schedule: its reading, next five fire times (UTC), last fire and counters."""
    schedules = await svc.get_schedules()
    if as_json:
        print_json([s.as_dict() for s in schedules])
        return 0
    out = console()
    out.print(f"{len(schedules)} schedule(s) on queue {svc.queue.keys.name!r}", markup=False)
    for s in schedules:
        out.print(f"\n{s.name}: {s.handler}, {s.description}", markup=False)
        if s.spec not in s.description:
            out.print(f"  {s.spec}", markup=False)
        if s.paused:
            out.print("  paused", markup=False)
        for at in s.next_fire_times:
            out.print(f"  next  {at:%Y-%m-%d %H:%M:%S} UTC", markup=False)
        last = f"{s.last_fire:%Y-%m-%d %H:%M:%S} UTC" if s.last_fire else "never"
        out.print(f"  last  {last}; {s.fired} run(s), {s.skipped} skipped", markup=False)
    return 0


async def pause(svc: JobService, name: str, as_json: bool) -> int:
    await _known(svc, name)
    changed = await svc.pause_schedule(name)
    return _report(as_json, name, "paused", changed, "was already paused")


async def resume(svc: JobService, name: str, as_json: bool) -> int:
    await _known(svc, name)
    changed = await svc.resume_schedule(name)
    return _report(as_json, name, "resumed", changed, "was not paused")


async def trigger(svc: JobService, name: str, as_json: bool) -> int:
    job_id = await svc.trigger_schedule(name)
    if job_id is None:
        raise CliError(_unknown(svc, name))
    if as_json:
        print_json({"schedule": name, "job_id": job_id})
    else:
        console().print(f"{name}: queued {job_id}")
    return 0


async def remove(svc: JobService, name: str, as_json: bool) -> int:
    if not await svc.unschedule(name):
        raise CliError(_unknown(svc, name))
    return _report(as_json, name, "removed", True, "")


async def _known(svc: JobService, name: str) -> None:
    if await svc.get_schedule(name) is None:
        raise CliError(_unknown(svc, name))


def _unknown(svc: JobService, name: str) -> str:
    return f"no schedule {name!r} on queue {svc.queue.keys.name!r}"


def _report(as_json: bool, name: str, done: str, changed: bool, otherwise: str) -> int:
    if as_json:
        print_json({"schedule": name, done: changed})
    else:
        console().print(f"{name}: {done}" if changed else f"{name}: {otherwise}")
    return 0
