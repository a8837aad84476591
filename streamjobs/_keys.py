"""The whole key schema of a queue, in one place.

Every key of a queue shares the hash tag `{name}`, so a queue lives in one Redis Cluster slot
and one Lua script may touch all of it. Scripts receive `QueueKeys.all` as KEYS, in this order;
per-job and per-worker keys are built inside scripts from the two prefixes passed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .models import JobPriority

#: Priority levels from highest to lowest: the order workers read their streams in.
PRIORITIES: tuple[JobPriority, ...] = tuple(sorted(JobPriority, reverse=True))

#: The consumer group every priority stream carries.
GROUP = "workers"


def stream_index(priority: JobPriority) -> int:
    """The 0-based position of a priority's stream in `QueueKeys.streams`."""
    return PRIORITIES.index(priority)


@dataclass(frozen=True)
class QueueKeys:
    """Key names of one queue: `<key_prefix>{<name>}:<part>`."""

    key_prefix: str = "streamjobs:"
    name: str = "default"

    @property
    def base(self) -> str:
        """The common prefix, hash tag included."""
        return f"{self.key_prefix}{{{self.name}}}:"

    @cached_property
    def streams(self) -> tuple[str, ...]:
        """One stream per priority, highest first."""
        return tuple(f"{self.base}stream:{p.name.lower()}" for p in PRIORITIES)

    @property
    def delayed(self) -> str:
        """Sorted set of scheduled jobs and retries, scored by due time (ms)."""
        return f"{self.base}delayed"

    @property
    def dead(self) -> str:
        """Stream of dead-lettered jobs."""
        return f"{self.base}dead"

    @property
    def events(self) -> str:
        """Stream of lifecycle events."""
        return f"{self.base}events"

    @property
    def stats(self) -> str:
        """Hash of counters behind the metrics."""
        return f"{self.base}stats"

    @property
    def workers(self) -> str:
        """Sorted set of worker pools scored by their last heartbeat (ms)."""
        return f"{self.base}workers"

    @property
    def wake(self) -> str:
        """List the promoter blocks on; pushed when a sooner delayed job arrives."""
        return f"{self.base}wake"

    @property
    def ready(self) -> str:
        """List idle readers block on: one token per job made ready, so one new job wakes one
        reader, whose start runs the moment the token is popped."""
        return f"{self.base}ready"

    @property
    def job_prefix(self) -> str:
        """Prefix of job record hashes."""
        return f"{self.base}job:"

    @property
    def pool_prefix(self) -> str:
        """Prefix of worker pool record hashes."""
        return f"{self.base}pool:"

    @property
    def dedupe_prefix(self) -> str:
        """Prefix of dedupe keys: each holds the id of the job that stands for its key."""
        return f"{self.base}dedupe:"

    def dedupe(self, key: str) -> str:
        """The key that holds the job standing for a `dedupe_key` (built from the prefix by
        enqueue_deduped.lua the same way)."""
        return f"{self.dedupe_prefix}{key}"

    def job(self, job_id: str) -> str:
        """The record hash of one job."""
        return f"{self.job_prefix}{job_id}"

    def pool(self, pool_id: str) -> str:
        """The heartbeat record of one worker pool."""
        return f"{self.pool_prefix}{pool_id}"

    def control(self, pool_id: str) -> str:
        """The list a worker pool blocks on for the ids of its running jobs to cancel (pushed
        by cancel.lua, which builds the same name from the pool prefix)."""
        return f"{self.pool_prefix}{pool_id}:control"

    @cached_property
    def deduping(self) -> tuple[str, ...]:
        """KEYS for enqueue_deduped.lua: every script's, then the dedupe prefix."""
        return (*self.all, self.dedupe_prefix)

    @cached_property
    def all(self) -> tuple[str, ...]:
        """KEYS for every script, in the order `lua/_prelude.lua` names them."""
        return (
            *self.streams,
            self.delayed,
            self.dead,
            self.events,
            self.stats,
            self.workers,
            self.job_prefix,
            self.wake,
            self.pool_prefix,
            self.ready,
        )
