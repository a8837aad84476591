"""How a worker pool paces itself, and how many workers it runs by default."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ConfigurationError


@dataclass(frozen=True)
class Timings:
    """How a pool paces itself (seconds); with the defaults a killed worker's job is running
    again elsewhere within about 6 s (the lease, then the next look for lapsed leases)."""

    lease: float = 5.0  # a running job's lease; a lapsed one is taken over
    reclaim_interval: float = 1.0  # how often an idle reader looks for lapsed leases
    heartbeat: float = 2.0  # registry heartbeat; a pool is gone after 3 missed ones
    max_crashes: int = 3  # workers lost running one job before it is dead-lettered
    settle_deadline: float = 15.0  # how long a finished job may retry recording its outcome
    max_promote_sleep: float = 30.0  # the promoter's longest sleep without a wake-up
    unhealthy_lag: float = 1.0  # event-loop lag that marks a pool unhealthy
    reap_interval: float = 45.0  # how often (±25%) consumers of gone pools leave the groups

    def __post_init__(self) -> None:
        # A pool must beat within every lease, or a lapsed lease would look like a crash.
        object.__setattr__(self, "heartbeat", min(self.heartbeat, self.lease / 2))

    @property
    def registry_ttl(self) -> float:
        """How long a silent pool stays listed (as unhealthy) before it is forgotten: past
        two of its leases, so that its jobs lapse while reclaim still reads its lease there."""
        return max(self.heartbeat * 10, self.lease * 2)


def default_worker_count() -> int:
    """`$JOB_WORKER_COUNT`, else the CPU count."""
    raw = os.environ.get("JOB_WORKER_COUNT")
    if raw:
        try:
            count = int(raw)
        except ValueError:
            raise ConfigurationError(f"JOB_WORKER_COUNT={raw!r} is not a whole number") from None
        if count < 1:
            raise ConfigurationError(f"JOB_WORKER_COUNT={raw!r} must be at least 1")
        return count
    return os.cpu_count() or 1
