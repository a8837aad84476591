"""Metrics and worker listings from one metrics.lua snapshot: pure decoding, no I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ._codec import pairs
from ._keys import PRIORITIES
from .models import WorkerInfo

if TYPE_CHECKING:
    from .async_worker import Timings


def workers_from(snapshot: list[Any], timings: Timings) -> list[WorkerInfo]:
    """Every worker of every live pool in the snapshot."""
    now_s = int(snapshot[4]) / 1000
    found = []
    for flat in snapshot[5]:
        pool = pairs(flat)
        beat = int(pool.get("heartbeat_at") or 0) / 1000
        lag = float(pool.get("lag") or 0)
        every = float(pool.get("heartbeat") or timings.heartbeat)  # the pool's own timings
        max_lag = float(pool.get("unhealthy_lag") or timings.unhealthy_lag)
        fresh = now_s - beat < every * 3
        healthy = fresh and lag < max_lag and pool.get("state") != "stopping"
        for w in orjson.loads(pool.get("workers") or "[]"):
            found.append(
                WorkerInfo(
                    id=w["id"],
                    status=w["status"],
                    jobs_completed=int(w["completed"]),
                    jobs_failed=int(w["failed"]),
                    uptime=max(0.0, now_s - float(w["started"])),
                    healthy=healthy,
                    pool=w["id"].rsplit("-", 1)[0],
                    host=pool.get("host", ""),
                    pid=int(pool.get("pid") or 0),
                    current_job=w.get("job"),
                    last_heartbeat=beat,
                    loop_lag=lag,
                )
            )
    return found


def metrics_from(snapshot: list[Any], timings: Timings) -> dict[str, Any]:
    """The contract's metrics: jobs by state and priority, lifetime counters, workers."""
    streams, delayed, dead, stats = snapshot[0], int(snapshot[1]), int(snapshot[2]), snapshot[3]
    counters = {k: int(v) for k, v in pairs(stats).items()}
    by_priority = {
        p.name.lower(): max(0, int(length) - int(delivered))
        for p, (length, delivered, _) in zip(PRIORITIES, streams)
    }
    running_by_priority = {
        p.name.lower(): int(delivered) for p, (_, delivered, _) in zip(PRIORITIES, streams)
    }
    ages = [int(age) for _, _, age in streams if int(age) >= 0]
    retrying = max(0, counters.get("retrying", 0))
    # PENDING jobs out of the streams: parked under a limit, or in their key's line
    limited, in_line = max(0, counters.get("limited", 0)), max(0, counters.get("in_line", 0))
    workers = workers_from(snapshot, timings)
    busy = sum(1 for w in workers if w.status == "busy")
    return {
        "queue": {
            "pending": sum(by_priority.values()) + limited + in_line,
            "limited": limited,
            "in_line": in_line,
            "running": sum(running_by_priority.values()),
            "scheduled": max(0, delayed - retrying),
            # waiting for their dependencies (depends_on) to complete
            "waiting": max(0, counters.get("waiting", 0)),
            "retrying": retrying,
            "dead_letter": dead,
            "completed": counters.get("completed", 0),
            "failed": counters.get("failed", 0),
            "cancelled": counters.get("cancelled", 0),
            "retried": counters.get("retried", 0),
            "dead_lettered": counters.get("dead_lettered", 0),
            "by_priority": by_priority,
            "running_by_priority": running_by_priority,
            # seconds the oldest pending job has waited in its stream (0.0 when none waits)
            "oldest_pending_age": max(ages, default=0) / 1000,
            # events the live pools' in-process event buses lost by falling behind
            "events_dropped": sum(int(pairs(p).get("events_dropped") or 0) for p in snapshot[5]),
        },
        "workers": {
            "total": len(workers),
            "idle": len(workers) - busy,
            "busy": busy,
            "healthy": sum(1 for w in workers if w.healthy),
        },
    }
