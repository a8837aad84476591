"""Read-only commands: `info`, `workers`, `jobs show`, `events`; JSON or rich tables."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import anyio

from .._metrics import metrics_from, workers_from
from .._replies import newest_first
from ..models import JobPriority, WorkerInfo
from ..redis_queue import RedisJobQueue
from ..service import JobService
from . import _render
from ._common import CliError, console, print_json
from ._limits import limits_dicts

#: "Completed/failed in the last minute" counts job.completed and job.failed events (the
#: latter includes dead letters) whose stream entry id falls in the last 60 s of server time.
WINDOW_S = 60
PAGE = 1000
TOTALS = ("completed", "failed", "cancelled", "retried", "dead_lettered")


async def _scan_events(
    queue: RedisJobQueue, after: str, pages: int = 20, partition: int = 0
) -> list[Any]:
    """A partition's events after the entry id `after`, oldest first, at most `pages` pages
    (XREAD)."""
    found: list[Any] = []
    for _ in range(pages):
        page = await queue.read_events(after, PAGE, partition=partition)
        found.extend(page)
        if len(page) < PAGE:
            break
        after = page[-1][0]
    return found


async def recent_outcomes(queue: RedisJobQueue, now_ms: int) -> dict[str, int]:
    """job.completed and job.failed events in the last WINDOW_S seconds (server clock), in
    every partition."""
    after = f"{now_ms - WINDOW_S * 1000}-0"
    events = [
        e for p in range(queue.partition_count) for e in await _scan_events(queue, after, 20, p)
    ]
    kinds = [fields.get("type") for _, fields in events]
    return {"completed": kinds.count("job.completed"), "failed": kinds.count("job.failed")}


def pools(workers: Iterable[WorkerInfo], now_s: float) -> list[dict[str, Any]]:
    """Workers grouped by pool (one pool per worker process), for `info`."""
    grouped: dict[str, dict[str, Any]] = {}
    for w in workers:
        pool = grouped.setdefault(w.pool, {
            "id": w.pool, "host": w.host, "pid": w.pid, "workers": 0, "busy": 0,
            "completed": 0, "failed": 0, "healthy": w.healthy, "loop_lag": w.loop_lag,
            "heartbeat_age": round(max(0.0, now_s - w.last_heartbeat), 3),
        })  # fmt: skip
        pool["workers"] += 1
        pool["busy"] += w.status == "busy"
        pool["completed"] += w.jobs_completed
        pool["failed"] += w.jobs_failed
    return list(grouped.values())


async def collect_info(svc: JobService) -> dict[str, Any]:
    """The numbers behind `streamjobs info`, from one snapshot plus the events stream."""
    timings = svc.worker_pool.timings
    snapshot = await svc.queue.snapshot(timings.registry_ttl)
    metrics, now_ms = metrics_from(snapshot, timings), int(snapshot[4])
    q = metrics["queue"]
    return {
        "queue": svc.queue.keys.name,
        "partitions": svc.queue.partition_count,
        "pending": q["by_priority"], "pending_total": q["pending"], "running": q["running"],
        "scheduled": q["scheduled"], "retrying": q["retrying"], "dead_letters": q["dead_letter"],
        "waiting": q["waiting"],
        "last_minute": await recent_outcomes(svc.queue, now_ms),
        "totals": {k: q[k] for k in TOTALS},
        "workers": metrics["workers"],
        "pools": pools(workers_from(snapshot, timings), now_ms / 1000),
        "maxmemory_policy": svc.queue.maxmemory_policy,
        "topology": svc.queue.topology,
        "limits": limits_dicts(await svc.get_limits()),
    }  # fmt: skip


async def info(svc: JobService, as_json: bool) -> int:
    """`streamjobs info`: depth per priority, running, scheduled, dead letters, workers."""
    data = await collect_info(svc)
    if as_json:
        print_json(data)
    else:
        _render.info(console(), data)
    return 0


async def workers(svc: JobService, as_json: bool) -> int:
    """`streamjobs workers`: every worker slot of every live pool on the queue."""
    found = await svc.get_workers()
    if as_json:
        print_json([_render.worker_dict(w) for w in found])
        return 0
    console().print(_render.workers_table(found))
    return 0


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat()


def _progress(record: dict[str, str]) -> dict[str, Any] | None:
    if "progress_at" not in record:
        return None
    return {"current": record.get("progress_current") or None,
            "total": record.get("progress_total") or None,
            "message": record.get("progress_message") or None,
            "at": _iso(record.get("progress_at"))}  # fmt: skip


def job_view(record: dict[str, str], history: list[Any]) -> dict[str, Any]:
    """A job record made readable: decoded JSON, priority names, ISO times, its history."""
    decode = _render.loads
    number = int(record.get("priority") or 10)
    priority = JobPriority(number).name.lower() if number in set(JobPriority) else number
    return {
        "id": record.get("id"), "handler": record.get("handler"), "status": record.get("status"),
        "priority": priority,
        "args": decode(record.get("args")), "kwargs": decode(record.get("kwargs")),
        "attempts": int(record.get("attempts") or 0),
        "max_retries": int(record.get("max_retries") or 0),
        "timeout": float(record["timeout"]) if record.get("timeout") else None,
        "worker": record.get("owner"), "created_at": _iso(record.get("created_at")),
        "started_at": _iso(record.get("started_at")),
        "finished_at": _iso(record.get("finished_at")),
        "progress": _progress(record), "error": record.get("error") or None,
        "result": decode(record.get("result")) if "result" in record else None,
        "history": [_render.event_dict(e, f) for e, f in history],
    }  # fmt: skip


async def show_job(svc: JobService, job_id: str, as_json: bool) -> int:
    """`streamjobs jobs show ID`: record, attempts, progress, error, and its events."""
    record = await svc.queue.record(job_id)
    if not record:
        where = svc.queue.keys.name
        raise CliError(f"no job {job_id!r} on queue {where!r} (unknown, or its record expired)")
    events = await _scan_events(svc.queue, "0-0", 10, svc.queue.partition_of(job_id))
    view = job_view(record, [(e, f) for e, f in events if f.get("job_id") == job_id])
    if as_json:
        print_json(view)
    else:
        _render.job(console(), view)
    return 0


async def events(svc: JobService, count: int, follow: bool, as_json: bool) -> int:
    """`streamjobs events`: the newest `count` events, then (`--follow`) new ones as they come,
    until SIGINT or SIGTERM."""
    queue = svc.queue
    if queue.partition_count > 1:
        return await _events_of_partitions(svc, count, follow, as_json)
    newest = []
    if count > 0:
        newest = await queue.driver.stream_range(queue.keys.events, count, reverse=True)
    for entry, fields in reversed(newest):
        _render.event_line(entry, fields, as_json)
    if not follow:
        return 0
    last = newest[0][0] if newest else await _newest_id(queue)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_signal, tg.cancel_scope)
        while True:
            for entry, fields in await queue.read_events(last, 100, block_ms=1000):
                last = entry
                _render.event_line(entry, fields, as_json)
    return 0


async def _events_of_partitions(svc: JobService, count: int, follow: bool, as_json: bool) -> int:
    """`events` on a partitioned queue: the newest `count` over every partition, then
    (`--follow`) every partition's new events, merged (`JobService.events`)."""
    queue = svc.queue
    newest: list[Any] = []
    for keys in queue.parts if count > 0 else ():
        newest += await queue.driver.stream_range(keys.events, count, reverse=True)
    shown = newest_first(newest)[:count]
    for entry, fields in reversed(shown):
        _render.event_line(entry, fields, as_json)
    if not follow:
        return 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_signal, tg.cancel_scope)
        async for event in svc.events(shown[0][0] if shown else "$"):
            entry = event.pop("id")
            event.pop("partition", None)
            _render.event_line(entry, event, as_json)
    return 0


async def _newest_id(queue: RedisJobQueue) -> str:
    newest = await queue.driver.stream_range(queue.keys.events, 1, reverse=True)
    return newest[0][0] if newest else "0-0"


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
