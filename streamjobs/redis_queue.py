"""The queue layer: the key schema, the Lua scripts, and one typed call per transition.

A queue has one partition unless made with more (`partitions=N`): each partition is a whole
queue of its own under its own hash tag (see `_keys`), and every script touches one
partition only. Calls about one job go to the job's partition (its id says which, see
`partition_of`); calls about the whole queue go to every partition, one call each, issued
concurrently. The count is recorded in Redis at connect, so every client agrees on it.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import _codec
from ._drivers.redis_sync import SyncDriver
from ._queue_submit import CONTROL_TTL_MS, SubmittingQueue
from ._replies import gather, merge_snapshots, newest_first, replicated_anyway
from ._scripts import script
from .errors import ReplicationError, StreamJobsError
from .models import JobDefinition, JobStatus

__all__ = ["CONTROL_TTL_MS", "Delivery", "LeaseLostError", "RedisJobQueue"]

log = logging.getLogger("streamjobs")


class LeaseLostError(StreamJobsError):
    """A worker tried to settle an attempt it no longer holds: the lease passed to another."""


@dataclass(frozen=True)
class Delivery:
    """A job started for a consumer: what it needs to run the job and settle the attempt."""

    job: JobDefinition | None  # None when the record cannot be decoded
    record: dict[str, str]
    stream: int  # 0-based index into QueueKeys.streams
    entry: str
    consumer: str
    partition: int = 0  # the queue partition the job lives in

    @property
    def job_id(self) -> str:
        """The job's id, even when its payload cannot be decoded."""
        return self.record.get("id", "")

    @property
    def attempt(self) -> str:
        """This attempt's number, as the record holds it."""
        return self.record.get("attempts", "0")


def _settled(reply: Any) -> None:
    """The one place where a settling script's return code becomes an exception."""
    if reply == 0:
        raise LeaseLostError("the job's lease passed to another worker; its outcome stands")


def _delivery(raw: Sequence[Any], consumer: str, partition: int = 0) -> Delivery:
    record = _codec.pairs(raw[2])
    try:
        job: JobDefinition | None = _codec.definition(record)
    except (ValueError, KeyError, TypeError):
        job = None
    return Delivery(job, record, int(raw[0]) - 1, str(raw[1]), consumer, partition)


class RedisJobQueue(SubmittingQueue):
    """One named queue in Redis: submit, start, settle, promote, reclaim and inspect jobs.

    `partitions` splits the queue into that many partitions (1 to 1024), each under a hash
    tag of its own, so that a Redis Cluster spreads one queue over its primaries. None uses
    the count recorded in Redis (1 when none is); a count other than the recorded one is
    refused at `connect()`. Every worker pool serves every partition.

    `redis_url` may be `redis+sentinel://host:port[,host:port...]/service[/db]`: the
    primary is found through the sentinels, and again after a failover (see
    `_drivers.sentinel`). `wait_replicas=N` makes every state change return only once N
    replicas acknowledged it (Redis WAIT, up to `wait_timeout` seconds), else raise
    ReplicationError: the change stands on the primary but may be lost in a failover.
    A worker's own changes are never raised for; their shortfall is logged.

    `redis_url` may also name any node of a Redis Cluster: `connect()` asks the server once
    (INFO) and serves a cluster through a cluster client (see `open_driver`), whatever
    `driver` names; `topology` then says which it is.
    """

    # -- working --------------------------------------------------------------------------

    async def start(
        self, consumer: str, count: int, *, lease_ms: int = 0, partition: int = 0,
        lowest: int = 4,
    ) -> list[Delivery]:  # fmt: skip
        """Start up to `count` new jobs, highest priority first. `lease_ms`, the consumer's
        lease, is recorded as each job's own: reclaim takes a job over only once idle past
        it (0 records none, and the reclaimer's lease applies). With many partitions: from
        `partition`, reading its streams down to the 1-based `lowest` only."""
        if self._n == 1:
            reply = await self._run("start", consumer, count, lease_ms)
            return [_delivery(raw, consumer) for raw in reply]
        keys = self.parts[partition]
        reply = await self._run("start", consumer, count, lease_ms, lowest, keys=keys)
        return [_delivery(raw, consumer, partition) for raw in reply]

    async def ready_level(self, partition: int) -> int:
        """The best stream (1 critical .. 4 low) of a partition with entries never delivered,
        0 when none (see ready_level.lua)."""
        return int(await self._run("ready_level", keys=self.parts[partition]))

    async def wait_ready(self, partition: int, timeout: float) -> bool:
        """Block until a job is made ready in a partition, or `timeout` seconds pass."""
        return await self.driver.wait_list(self.parts[partition].ready, timeout)

    async def wait_for_jobs(
        self, consumer: str, count: int, block_ms: int, *, lease_ms: int = 0
    ) -> list[Delivery]:
        """Block until a job is made ready (or block_ms passes), then start up to `count`
        (as `start`): start.lua goes out in the same write as the blocking pop, so Redis runs
        it the moment the pop returns, and waking costs no round trip of its own. One
        partition only (a worker on many waits for each, see `wait_ready`)."""
        try:
            reply = await self.driver.wait_list_then_eval(
                self.keys.ready, block_ms / 1000, script("start"), self.keys.all,
                self.script_args(consumer, count, lease_ms),
            )  # fmt: skip
        except ReplicationError as exc:
            reply = replicated_anyway("start", exc)
        return [_delivery(raw, consumer) for raw in reply]

    async def reclaim(
        self, consumer: str, count: int, lease_ms: int, max_crashes: int, cursors: list[str],
        *, partition: int = 0,
    ) -> list[Delivery]:  # fmt: skip
        """Take over and start entries idle past their job's own lease (`lease_ms` for a job
        that recorded none; recorded for the jobs started here); `cursors` (one per stream)
        is updated in place. One partition per call."""
        keys = self.parts[partition]
        reply = await self._run(
            "reclaim", consumer, count, lease_ms, max_crashes, *cursors, keys=keys
        )
        cursors[:] = [str(c) for c in reply[0]]
        return [_delivery(raw, consumer, partition) for raw in reply[1]]

    async def progress(self, d: Delivery, current: object, total: object, message: object) -> bool:
        """Record reported progress; False when the attempt is no longer this consumer's.
        A current or total that is not a number raises TypeError before anything is sent."""
        values = _codec.progress_fields(current, total, message)
        keys = self.parts[d.partition]
        return bool(
            await self._run("progress", d.job_id, d.consumer, d.attempt, *values, keys=keys)
        )

    def _settle_args(self, d: Delivery) -> tuple[Any, ...]:
        return (d.job_id, d.consumer, d.attempt, d.stream + 1, d.entry)

    async def complete(self, d: Delivery, result_json: str) -> None:
        """Record the result and acknowledge the entry (complete.lua)."""
        [code] = await self.complete_many([(d, result_json)])
        _settled(code)

    async def complete_many(self, done: Sequence[tuple[Delivery, str]]) -> list[int]:
        """Complete many jobs in one script call per partition; per job 1 recorded, 0 refused
        as stale."""
        if self._n == 1:
            flat = [part for d, result in done for part in (*self._settle_args(d), result)]
            return [int(code) for code in await self._run("complete", *flat)]
        groups: dict[int, list[int]] = {}
        for i, (d, _) in enumerate(done):
            groups.setdefault(d.partition, []).append(i)

        async def send(p: int, at: list[int]) -> list[Any]:
            flat = [x for i in at for x in (*self._settle_args(done[i][0]), done[i][1])]
            return list(await self._run("complete", *flat, keys=self.parts[p]))

        replies = await gather([partial(send, p, at) for p, at in groups.items()])
        codes = [0] * len(done)
        for at, reply in zip(groups.values(), replies):
            for i, code in zip(at, reply):
                codes[i] = int(code)
        return codes

    async def fail(self, d: Delivery, error: str, traceback: str = "") -> None:
        """End the job FAILED without retry (fail.lua)."""
        keys = self.parts[d.partition]
        _settled(await self._run("fail", *self._settle_args(d), error, traceback, keys=keys))

    async def retry(self, d: Delivery, error: str, delay: float, traceback: str = "") -> None:
        """Park the job in the delayed set for `delay` seconds (retry.lua)."""
        args = (*self._settle_args(d), error, int(delay * 1000), traceback)
        _settled(await self._run("retry", *args, keys=self.parts[d.partition]))

    async def dead_letter(self, d: Delivery, error: str, reason: str, traceback: str = "") -> None:
        """Move the job to the dead-letter stream (dead_letter.lua)."""
        args = (*self._settle_args(d), error, reason, traceback)
        _settled(await self._run("dead_letter", *args, keys=self.parts[d.partition]))

    def sync_driver(self) -> SyncDriver:
        """A blocking driver for a thread of this process (lease renewal); once connected,
        the queue knows whether it is on a cluster, and the driver need not ask again."""
        clustered = None if self.topology is None else self.topology.startswith("Redis Cluster")
        return SyncDriver(self.redis_url, self.wait, cluster=clustered)

    def extend_leases(
        self, driver: SyncDriver, consumer: str, held: Sequence[tuple[str, int, str, int]]
    ) -> list[str]:
        """Renew (job id, stream, entry, partition) leases from a thread, one call per
        partition; returns the job ids lost."""
        groups: dict[int, list[Any]] = {}
        for job_id, stream, entry, p in held:
            groups.setdefault(p, []).extend((stream, entry, job_id))
        lost: list[str] = []
        for p, flat in groups.items():
            args = self.script_args(consumer, *flat)
            try:
                lost += driver.eval(script("extend_lease"), self.parts[p].all, args)
            except ReplicationError as exc:
                lost += replicated_anyway("extend_lease", exc)
        return lost

    async def release(self, consumer: str, only: Sequence[Delivery] = ()) -> int:
        """Hand back every entry the consumer holds (or `only` those jobs) to the tail of
        their streams; returns how many jobs went back."""
        if self._n == 1:
            pairs = [part for d in only for part in (d.stream + 1, d.entry)]
            return int(await self._run("release", consumer, *pairs))
        groups: dict[int, list[Any]] = {}
        for d in only:
            groups.setdefault(d.partition, []).extend((d.stream + 1, d.entry))
        if only:
            calls = [
                partial(self._run, "release", consumer, *pairs, keys=self.parts[p])
                for p, pairs in groups.items()
            ]
            return sum(int(r) for r in await gather(calls))
        return sum(
            int(r) for r in await self._each(lambda k, p: self._run("release", consumer, keys=k))
        )

    async def reap_consumers(self) -> int:
        """Remove the consumers of pools with no heartbeat that hold no entry from the
        groups; returns how many were removed (one per group)."""
        return sum(
            int(r) for r in await self._each(lambda k, p: self._run("reap_consumers", keys=k))
        )

    async def purge_dead_letters(self, limit: int) -> tuple[int, int]:
        """Delete up to `limit` of the oldest dead letters and their records for good (in
        total over the partitions, one after another); returns (purged, left)."""
        purged = left = 0
        for keys in self.parts:
            if purged < limit:
                done, rest = await self._run_strict("purge_dead_letters", limit - purged, keys=keys)
                purged, left = purged + int(done), left + int(rest)
            else:  # the limit is reached: only count what is left (metrics.lua reads only)
                left += int((await self._run("metrics", 0, keys=keys))[2])
        return purged, left

    async def promote(self, limit: int = 1000, *, partition: int = 0) -> float | None:
        """Queue due delayed jobs of a partition; seconds until its next is due (0: more now,
        None: none)."""
        reply = int(await self._run("promote", limit, keys=self.parts[partition]))
        return None if reply < 0 else reply / 1000

    async def wait_for_wake(self, timeout: float, *, partition: int = 0) -> bool:
        """Block until a sooner delayed job is submitted to the partition, or `timeout`
        seconds pass."""
        return await self.driver.wait_list(self.parts[partition].wake, timeout)

    async def wait_for_cancel(
        self, pool_id: str, timeout: float, *, partition: int = 0
    ) -> str | None:
        """Block until a running job of this pool in `partition` is cancelled (its id) or
        `timeout` passes."""
        return await self.driver.pop_list(self.parts[partition].control(pool_id), timeout)

    async def heartbeat(self, pool_id: str, ttl: float, record: dict[str, str]) -> None:
        """Register a worker pool as alive for `ttl` seconds, in every partition's registry
        (each partition's reclaim reads its own)."""
        flat = [part for item in record.items() for part in item]
        await self._each(
            lambda k, p: self._run("heartbeat", pool_id, int(ttl * 1000), *flat, keys=k)
        )

    async def deregister(self, pool_id: str) -> None:
        """Remove a worker pool from every partition's registry."""
        await self._each(lambda k, p: self._run("deregister", pool_id, keys=k))

    # -- reading --------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        """A key of this queue by name (kept for the guide's troubleshooting snippet)."""
        return f"{self.keys.base}{name}"

    @property
    def _redis(self) -> _GuideCompat:
        """Read-only access in the shape of the guide's troubleshooting snippet."""
        return _GuideCompat(self)

    async def record(self, job_id: str) -> dict[str, str]:
        """A job's record with its id ({} when unknown or expired)."""
        return _codec.with_id(job_id, await self.driver.hgetall(self.keys_of(job_id).job(job_id)))

    async def status(self, job_id: str) -> JobStatus | None:
        """A job's status, or None when unknown or expired."""
        raw = await self.driver.hget(self.keys_of(job_id).job(job_id), "status")
        return JobStatus(raw) if raw else None

    async def dead_letters(self, limit: int) -> list[JobDefinition]:
        """The newest dead letters, newest first (over every partition)."""
        parts = await self._each(lambda k, p: self.driver.stream_range(k.dead, limit, reverse=True))
        entries = newest_first([e for part in parts for e in part])[:limit]
        return [_codec.dead_letter(entry, fields) for entry, fields in entries]

    async def snapshot(self, max_pool_age: float) -> list[Any]:
        """The raw reply of metrics.lua (see there), summed over the partitions."""
        age = int(max_pool_age * 1000)
        return merge_snapshots(await self._each(lambda k, p: self._run("metrics", age, keys=k)))

    async def last_event_id(self, partition: int = 0) -> str:
        """The id of a partition's newest event ("0-0" when there is none): follow from
        there."""
        newest = await self.driver.stream_range(self.parts[partition].events, 1, reverse=True)
        return newest[0][0] if newest else "0-0"

    async def read_events(
        self, last_id: str, count: int = 100, block_ms: int | None = None, *, partition: int = 0
    ) -> list[tuple[str, dict[str, str]]]:
        """A partition's events after `last_id` ("$" for only new ones), oldest first."""
        return await self.driver.read_stream(self.parts[partition].events, last_id, count, block_ms)


class _GuideCompat:
    """The guide's troubleshooting snippet reads `queue._redis.hget(queue._key("error"), id)`:
    this keeps it working by reading the error from the job's record."""

    def __init__(self, queue: RedisJobQueue) -> None:
        self._queue = queue

    async def hget(self, key: str, field: str) -> str | None:
        if key == self._queue._key("error"):
            return await self._queue.driver.hget(self._queue.keys_of(field).job(field), "error")
        return await self._queue.driver.hget(key, field)
