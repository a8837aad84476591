"""Periodic schedules, the pure part: validating a schedule, computing its ticks (cron by
cronsim, or a fixed interval), planning which missed ticks run, and describing it to people.

Redis holds each schedule's state and its next due time; every worker pool's scheduler task
fires due ticks through one script (`fire_schedule.lua`) that compare-and-sets that time, so
a tick runs once however many pools look and whatever their clocks say. Python only computes
the candidate times, which cron needs a library for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from cronsim import CronSim, CronSimError

from . import _codec
from .errors import InvalidJobError
from .models import JobPriority

#: Misfire policies: what runs for ticks that passed while no pool ran.
MISFIRES = ("coalesce", "skip", "all")
#: The most missed ticks `misfire="all"` runs in one go (the newest ones; older are dropped).
BACKFILL = 100
#: Pools look at least this often (ms), so a new or changed schedule is seen within it.
LOOK_MS = 1000
#: No pool looked for longer than this (ms): ticks before the next look count as missed.
GAP_MS = 3000
#: Due schedules fired per look (more are fired on the next look, at once).
FIRE_BATCH = 100
#: Next fire times `get_schedules()` lists per schedule.
NEXT_SHOWN = 5

_NAME = re.compile(r"^[A-Za-z0-9_.@/+=-]{1,100}$")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: a cron expression in a time zone, or every `interval_ms`
    (ticks at whole multiples of the interval since the Unix epoch, so that every pool and
    every restart agrees on them: `every=60` fires at the top of each minute)."""

    kind: str  # "cron" or "every"
    expr: str  # the cron expression, or the interval in ms
    tz: str = "UTC"

    @property
    def key(self) -> str:
        """What a stored schedule compares to tell whether its timing changed."""
        return f"{self.kind}|{self.expr}|{self.tz}"

    @property
    def interval_ms(self) -> int:
        return int(self.expr)

    def _cron(self, ms: int, reverse: bool) -> CronSim:
        # cronsim strips microseconds; reversing from a time with some makes the whole
        # second itself the first candidate, so ticks at `ms` exactly are included.
        at = datetime.fromtimestamp(ms / 1000, tz=timezone.utc) + timedelta(microseconds=500)
        return CronSim(self.expr, at.astimezone(ZoneInfo(self.tz)), reverse=reverse)

    def after(self, ms: int) -> Iterator[int]:
        """Ticks strictly after `ms` (epoch ms), ascending."""
        if self.kind == "every":
            step = self.interval_ms
            tick = (ms // step + 1) * step
            while True:
                yield tick
                tick += step
        for at in self._cron(ms, reverse=False):
            tick = int(at.timestamp() * 1000)
            if tick > ms:
                yield tick

    def at_or_before(self, ms: int) -> Iterator[int]:
        """Ticks at or before `ms`, newest first."""
        if self.kind == "every":
            step = self.interval_ms
            tick = ms // step * step
            while tick >= 0:
                yield tick
                tick -= step
            return
        for at in self._cron(ms, reverse=True):
            tick = int(at.timestamp() * 1000)
            if tick <= ms:
                yield tick

    def describe(self) -> str:
        """A human reading: "every 30 s", "at 02:00 every day (Europe/Berlin)"; the
        expression itself where no common form fits."""
        text = _every_text(self.interval_ms) if self.kind == "every" else _cron_text(self.expr)
        return text if self.tz == "UTC" or self.kind == "every" else f"{text} ({self.tz})"


def next_after(timing: Timing, ms: int) -> int:
    """The first tick strictly after `ms`."""
    return next(timing.after(ms))


def upcoming(timing: Timing, first: int, count: int = NEXT_SHOWN) -> list[int]:
    """`count` ticks from `first` (itself a tick) on."""
    ticks = [first]
    for tick in timing.after(first):
        if len(ticks) >= count:
            break
        ticks.append(tick)
    return ticks


@dataclass(frozen=True)
class Plan:
    """What one look does with a due schedule: the ticks that run (ascending), the next
    due time, and how many pending ticks the misfire policy dropped (at least)."""

    ticks: list[int]
    next: int
    dropped: int


def plan(timing: Timing, stored_next: int, now: int, back: int, misfire: str) -> Plan:
    """Which of the ticks from `stored_next` up to `now` run. A tick before `back` (when
    the pools came back after none looked for GAP_MS) was missed, and `misfire` decides:
    "coalesce" runs the newest missed tick, "skip" none, "all" the newest BACKFILL of them.
    Ticks since `back` are on time and run. Only BACKFILL + 1 ticks are ever enumerated."""
    pending = [stored_next]
    for tick in timing.at_or_before(now):
        if tick <= stored_next or len(pending) > BACKFILL:
            break
        pending.append(tick)
    pending.sort(reverse=True)
    on_time = [t for t in pending if t >= back]
    missed = [t for t in pending if t < back]
    keep = {"coalesce": 1, "skip": 0, "all": BACKFILL}.get(misfire, 1)
    run = sorted(on_time[:BACKFILL] + missed[:keep])
    dropped = len(pending) - len(run)
    if timing.kind == "every":  # exact, however many passed
        dropped = (now - stored_next) // timing.interval_ms + 1 - len(run)
    return Plan(run, next_after(timing, now), max(0, dropped))


# -- validation -----------------------------------------------------------------------------


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidJobError(
            "name", f"{name!r} must be 1-100 letters, digits or _.@/+=- characters"
        )
    return name


def timing_of(cron: object, every: object, tz: object) -> Timing:
    """The checked timing of `schedule()`: exactly one of `cron` and `every`."""
    if not isinstance(tz, str):
        raise InvalidJobError("tz", f"must be a time zone name, not {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidJobError("tz", f"{tz!r} is not a known time zone") from None
    if (cron is None) == (every is None):
        raise InvalidJobError("cron", "give exactly one of cron= and every=")
    return _cron_timing(cron, tz) if every is None else _every_timing(every, tz)


def _every_timing(every: object, tz: str) -> Timing:
    if isinstance(every, timedelta):
        every = every.total_seconds()
    if isinstance(every, bool) or not isinstance(every, (int, float)):
        raise InvalidJobError("every", f"must be seconds or a timedelta, not {every!r}")
    if not math.isfinite(every) or round(every * 1000) < 1:
        raise InvalidJobError("every", f"must be at least 0.001 seconds, not {every!r}")
    return Timing("every", str(round(every * 1000)), tz)


def _cron_timing(cron: object, tz: str) -> Timing:
    if not isinstance(cron, str):
        raise InvalidJobError("cron", f"must be a cron expression string, not {cron!r}")
    parts = cron.split()
    if len(parts) == 6 and parts[0] == "0":
        parts = parts[1:]  # whole minutes: the 5-field form, with cron's DST handling
    timing = Timing("cron", " ".join(parts), tz)
    if len(parts) not in (5, 6):
        raise InvalidJobError("cron", f"{cron!r} needs 5 fields, or 6 with seconds first")
    try:
        next_after(timing, 0)
    except CronSimError as exc:
        raise InvalidJobError("cron", f"{cron!r}: {exc}") from None
    except StopIteration:
        raise InvalidJobError("cron", f"{cron!r} never fires") from None
    return timing


def lateness_ms(max_lateness: object) -> int | None:
    if max_lateness is None:
        return None
    if isinstance(max_lateness, timedelta):
        max_lateness = max_lateness.total_seconds()
    if (
        isinstance(max_lateness, bool)
        or not isinstance(max_lateness, (int, float))
        or not math.isfinite(max_lateness)
        or max_lateness < 0
    ):
        raise InvalidJobError("max_lateness", f"must be seconds >= 0, not {max_lateness!r}")
    return round(max_lateness * 1000)


def record_fields(
    timing: Timing, job: _codec.NewJob, misfire: object, max_lateness: object, overlap: object
) -> list[str]:
    """The schedule's stored fields (besides its next time, paused flag and history)."""
    if misfire not in MISFIRES:
        raise InvalidJobError("misfire", f"{misfire!r} is not one of {', '.join(MISFIRES)}")
    if not isinstance(overlap, bool):
        raise InvalidJobError("overlap", f"must be True or False, not {overlap!r}")
    if misfire == "all" and not overlap:
        raise InvalidJobError(
            "misfire", "'all' queues missed runs side by side: it needs overlap=True"
        )
    late = lateness_ms(max_lateness)
    return [
        "kind", timing.kind, "expr", timing.expr, "tz", timing.tz,
        "handler", job.handler, "priority", str(int(job.priority)),
        "job", _codec.dumps(list(job.fields)), "misfire", str(misfire),
        "max_lateness_ms", "" if late is None else str(late), "overlap", "1" if overlap else "0",
    ]  # fmt: skip


# -- reading back ---------------------------------------------------------------------------


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass
class ScheduleInfo:
    """A schedule as stored: its timing and job, the next fire times (none while paused),
    the last tick that queued a run and that run's job id, and its counters."""

    name: str
    handler: str
    spec: str  # "cron 30 2 * * *" or "every 30 s"
    description: str
    tz: str
    paused: bool
    next_fire_times: list[datetime] = field(default_factory=list)
    last_fire: datetime | None = None
    last_job_id: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: JobPriority = JobPriority.NORMAL
    misfire: str = "coalesce"
    max_lateness: float | None = None
    overlap: bool = False
    fired: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601 text)."""
        out = dict(self.__dict__)
        out["priority"] = self.priority.name.lower()
        out["next_fire_times"] = [t.isoformat() for t in self.next_fire_times]
        out["last_fire"] = self.last_fire.isoformat() if self.last_fire else None
        return out


def timing_from(record: Mapping[str, str]) -> Timing:
    return Timing(record["kind"], record["expr"], record.get("tz") or "UTC")


def info(name: str, record: Mapping[str, str]) -> ScheduleInfo:
    """A ScheduleInfo from a schedule's hash."""
    timing = timing_from(record)
    paused = record.get("paused") == "1"
    nxt = record.get("next")
    times = [] if paused or not nxt else upcoming(timing, int(nxt))
    job = _codec.pairs(orjson.loads(record.get("job") or "[]"))
    late = record.get("max_lateness_ms")
    last = record.get("last")
    spec = f"cron {timing.expr}" if timing.kind == "cron" else _every_text(timing.interval_ms)
    return ScheduleInfo(
        name=name, handler=record.get("handler", ""), spec=spec,
        description=timing.describe(), tz=timing.tz, paused=paused,
        next_fire_times=[t for t in map(_when, times) if t is not None],
        last_fire=_when(int(last)) if last else None, last_job_id=record.get("last_job") or None,
        args=tuple(orjson.loads(job.get("args", "[]"))),
        kwargs=orjson.loads(job.get("kwargs", "{}")),
        priority=JobPriority(int(record.get("priority") or 10)),
        misfire=record.get("misfire", "coalesce"),
        max_lateness=int(late) / 1000 if late else None, overlap=record.get("overlap") == "1",
        fired=int(record.get("fired") or 0), skipped=int(record.get("skipped") or 0),
    )  # fmt: skip


def parse_read(reply: Sequence[Any]) -> tuple[int, dict[str, dict[str, str]]]:
    """get_schedules.lua's reply: Redis' time (ms) and each schedule's hash by name."""
    now, found = reply
    return int(now), {str(item[0]): _codec.pairs(item[1]) for item in found}


# -- describing -----------------------------------------------------------------------------


def _every_text(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000)):
        if ms % size == 0:
            n = ms // size
            return f"every {unit_name(unit)}" if n == 1 else f"every {n} {unit}"
    return f"every {ms / 1000:g} s"


def unit_name(unit: str) -> str:
    return {"d": "day", "h": "hour", "min": "minute"}[unit]


def _cron_text(expr: str) -> str:
    parts = expr.split()
    second = ""
    if len(parts) == 6:
        second, parts = parts[0], parts[1:]
        if parts == ["*"] * 5:
            return "every second" if second == "*" else _step(second, "s") or f"cron {expr}"
        if not second.isdigit():
            return f"cron {expr}"
    minute, hour, day, month, weekday = parts
    if month != "*":
        return f"cron {expr}"
    if hour == day == weekday == "*" and not second:
        if minute == "*":
            return "every minute"
        if minute.isdigit():
            return f"every hour at :{int(minute):02d}"
        return _step(minute, "min") or f"cron {expr}"
    if minute.isdigit() and hour.isdigit():
        return _daily_text(expr, second, minute, hour, day, weekday)
    if minute.isdigit() and (step := _step(hour, "h")) and day == weekday == "*" and not second:
        return f"{step} at :{int(minute):02d}"
    return f"cron {expr}"


def _daily_text(expr: str, second: str, minute: str, hour: str, day: str, weekday: str) -> str:
    at = f"at {int(hour):02d}:{int(minute):02d}" + (f":{int(second):02d}" if second else "")
    if day == weekday == "*":
        return f"{at} every day"
    if day == "*" and (days := _weekdays(weekday)):
        return f"{at} on {days}"
    if weekday == "*" and day.isdigit():
        return f"{at} on day {int(day)} of every month"
    return f"cron {expr}"


def _step(part: str, unit: str) -> str | None:
    match = re.fullmatch(r"\*/(\d+)", part)
    return f"every {int(match.group(1))} {unit}" if match else None


def _weekdays(part: str) -> str | None:
    def name(text: str) -> str | None:
        return _WEEKDAYS[int(text) % 7] if text.isdigit() and int(text) <= 7 else None

    if match := re.fullmatch(r"(\d)-(\d)", part):
        first, last = name(match.group(1)), name(match.group(2))
        return f"{first} to {last}" if first and last else None
    names = [name(p) for p in part.split(",")]
    return ", ".join(n for n in names if n) if all(names) else None


# -- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSchedule:
    """A validated `schedule()` call, ready for schedule.lua."""

    name: str
    timing: Timing
    fields: list[str]

    def put_args(self, now: int) -> tuple[Any, ...]:
        """schedule.lua's own ARGV, its first tick counted from Redis' `now`."""
        return (self.name, self.timing.key, next_after(self.timing, now), *self.fields)


def new_schedule(
    name: object, handler: object, *, cron: object, every: object, tz: object,
    args: object, kwargs: object, priority: object, timeout: object, max_retries: object,
    retry_delay: object, retry_backoff: object, misfire: object, max_lateness: object,
    overlap: object, max_payload: int,
) -> NewSchedule:  # fmt: skip
    """Check every argument of `schedule()`; InvalidJobError names the first one wrong."""
    checked = check_name(name)
    timing = timing_of(cron, every, tz)
    if not isinstance(handler, str):
        raise InvalidJobError("handler", f"{handler!r} must be a non-empty name without spaces")
    job = _codec.new_job(
        handler, args, kwargs,
        priority=priority, timeout=timeout, max_retries=max_retries, retry_delay=retry_delay,
        retry_backoff=retry_backoff, job_id=f"sched:{checked}:0", max_payload=max_payload,
    )  # fmt: skip
    return NewSchedule(checked, timing, record_fields(timing, job, misfire, max_lateness, overlap))


def fired(reply: Sequence[Any]) -> list[str]:
    """The job ids fire_schedule.lua queued ([] for an unknown schedule)."""
    return [str(job_id) for job_id in reply[2:]]
