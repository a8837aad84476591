"""The whole key schema of a queue, in one place.

Every key of a queue partition shares one hash tag, so a partition lives in one Redis Cluster
slot and one Lua script may touch all of it. With one partition (the default) the tag is the
queue's name, `{name}`; with N partitions each has a tag of its own (`partition_tag`), whose
slot falls in the p-th of N equal slot ranges, so partitions spread over a cluster's primaries.
Scripts receive `QueueKeys.all` as KEYS, in this order; per-job and per-worker keys are built
inside scripts from the two prefixes passed there.
"""

from __future__ import annotations

import binascii
import re
import zlib
from dataclasses import dataclass
from functools import cache, cached_property

from .models import JobPriority

#: Priority levels from highest to lowest: the order workers read their streams in.
PRIORITIES: tuple[JobPriority, ...] = tuple(sorted(JobPriority, reverse=True))

#: The consumer group every priority stream carries.
GROUP = "workers"


def stream_index(priority: JobPriority) -> int:
    """The 0-based position of a priority's stream in `QueueKeys.streams`."""
    return PRIORITIES.index(priority)


#: Redis Cluster's hash slots.
SLOTS = 16384
#: Most partitions a queue may have.
MAX_PARTITIONS = 1024
#: Candidates tried per partition for a tag in its slot range: at 1024 partitions each
#: candidate hits with odds 1/1024, so all of them miss with odds below e**-60.
_TAG_TRIES = 64 * MAX_PARTITIONS


def crc16(data: bytes) -> int:
    """CRC16-XMODEM (polynomial 0x1021, initial value 0), the checksum behind Redis Cluster's
    key slots. binascii.crc_hqx computes exactly this CRC, in C: the tag search below tries
    about N candidates per partition, so 1024 partitions take a second, not fifteen."""
    return binascii.crc_hqx(data, 0)


def key_slot(key: str) -> int:
    """The Redis Cluster slot of a key: the CRC of its hash tag (the text between the first
    `{` and the next `}`, when not empty), else of the whole key, modulo 16384."""
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % SLOTS


@cache
def partition_tag(name: str, p: int, n: int) -> str:
    """The hash tag of partition `p` of `n` of queue `name`: the name itself with one
    partition (today's layout); else the first `name:p:k` (k = 0, 1, ...) whose slot lies in
    the p-th of n equal slot ranges, so that the partitions spread evenly over the primaries
    of a cluster whose slots are split evenly. Deterministic: every client finds the same."""
    if n == 1:
        return name
    low, high = p * SLOTS // n, (p + 1) * SLOTS // n
    for k in range(_TAG_TRIES):
        tag = f"{name}:{p}:{k}"
        if low <= crc16(tag.encode()) % SLOTS < high:
            return tag
    return f"{name}:{p}"  # never reached in practice (see _TAG_TRIES); still deterministic


_LEADING_PARTITION = re.compile(r"^(\d+)\.")


#: The id prefix of a schedule's runs (`sched:<name>:<tick>`).
SCHEDULED_PREFIX = "sched:"


def partition_of(job_id: str, n: int) -> int:
    """The partition a job id lives in: 0 with one partition; the id's leading `<p>.` when it
    has one below n (generated ids carry it); 0 for a schedule's runs (`sched:...`: schedules
    live in partition 0, whose script queues their runs); else the id's CRC-32 modulo n."""
    if n == 1 or job_id.startswith(SCHEDULED_PREFIX):
        return 0
    m = _LEADING_PARTITION.match(job_id)
    if m is not None and (p := int(m.group(1))) < n:
        return p
    return zlib.crc32(job_id.encode()) % n


def partitions_key(key_prefix: str, name: str) -> str:
    """The key holding a queue's partition count (no hash tag: it belongs to no partition)."""
    return f"{key_prefix}{name}:partitions"


@dataclass(frozen=True)
class QueueKeys:
    """Key names of one queue partition: `<key_prefix>{<tag>}:<part>`, the tag being the
    queue's name unless given (see `partition_tag`)."""

    key_prefix: str = "streamjobs:"
    name: str = "default"
    tag: str = ""

    @classmethod
    def partition(cls, key_prefix: str, name: str, p: int, n: int) -> QueueKeys:
        """The keys of partition `p` of `n` (with n == 1, the queue's one set of keys)."""
        return cls(key_prefix, name, "" if n == 1 else partition_tag(name, p, n))

    @property
    def base(self) -> str:
        """The common prefix, hash tag included."""
        return f"{self.key_prefix}{{{self.tag or self.name}}}:"

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

    @cached_property
    def schedule_keys(self) -> tuple[str, str, str]:
        """Where schedules live, all in one place (KEYS 14-16 of the schedule scripts): the
        sorted set of schedule names by next due time (ms), the prefix of each schedule's
        hash, and the hash of the schedulers' clock (last look, when looks resumed)."""
        return (f"{self.base}schedules", f"{self.base}schedule:", f"{self.base}schedules:clock")

    @cached_property
    def scheduling(self) -> tuple[str, ...]:
        """KEYS for the schedule scripts: every script's, then `schedule_keys`."""
        return (*self.all, *self.schedule_keys)

    @property
    def limits(self) -> str:
        """Hash of limit key -> "concurrency rate window_ms" (0 = none), set by set_limit.lua.
        The limit names below are built in the scripts from the job prefix the same way
        (`lua/_prelude.lua`): they share the queue's hash tag."""
        return f"{self.base}limits"

    @property
    def limits_due(self) -> str:
        """Sorted set of limit key -> when its rate window next opens (ms), for the promoter."""
        return f"{self.base}limits:due"

    def limit(self, key: str, part: str) -> str:
        """One of a limit key's keys: `active` (set of the ids holding its slots), `log` (its
        starts in the rate window), `waiting` (list of its jobs parked until it has room)."""
        return f"{self.base}limit:{key}:{part}"

    @property
    def fair(self) -> str:
        """Hash of "<priority>:<limit key>" -> the key's jobs in that stream not yet started."""
        return f"{self.base}fair"

    def fair_line(self, priority: int, key: str) -> str:
        """The line of a limit key's jobs at a priority, waiting their turn in the stream."""
        return f"{self.fair}:{priority}:{key}"

    @property
    def dashboard_minutes(self) -> str:
        """Hash the dashboard samples completed/failed counters into, one field per minute."""
        return f"{self.base}dashboard:minutes"

    @property
    def dashboard_secret(self) -> str:
        """The secret the dashboard processes of this queue sign their CSRF tokens with."""
        return f"{self.base}dashboard:secret"

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
