"""The queue layer: the key schema, the Lua scripts, and one typed call per transition."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _codec
from ._drivers import Driver, open_driver
from ._drivers._pipeline import ReplyLost
from ._drivers.redis_sync import SyncDriver
from ._keys import GROUP, QueueKeys
from ._observe import default_observers
from ._scripts import script
from .errors import ConfigurationError, PartialSubmitError, RedisVersionError, StreamJobsError
from .models import CancelOutcome, JobDefinition, JobStatus

DEFAULT_URL = "redis://localhost:6379/0"
#: Jobs per enqueue.lua call in a bulk submit: calls stay short, so Redis never stalls long.
ENQUEUE_CHUNK = 200
MIN_REDIS = (6, 2)
#: How long a pool's control list outlives its last push (ms): a live pool pops at once, and
#: one that died leaves nothing behind for long.
CONTROL_TTL_MS = 600_000

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

    @property
    def job_id(self) -> str:
        """The job's id, even when its payload cannot be decoded."""
        return self.record.get("id", "")

    @property
    def attempt(self) -> str:
        """This attempt's number, as the record holds it."""
        return self.record.get("attempts", "0")


def check_version(version: tuple[int, ...]) -> None:
    """Refuse a Redis older than 6.2 (no XAUTOCLAIM) with a message that says so."""
    if version[:2] < MIN_REDIS:
        found = ".".join(map(str, version))
        raise RedisVersionError(f"Redis {found} is too old: streamjobs needs Redis 6.2 or newer")


def warn_if_evicting(policy: str | None) -> None:
    """Warn when Redis may evict keys: a queued job's record or stream could vanish."""
    if policy is not None and policy != "noeviction":
        log.warning(
            "Redis maxmemory-policy is %r, not 'noeviction': once Redis is full it may evict "
            "queued jobs without a trace; set maxmemory-policy noeviction", policy,
        )  # fmt: skip


def deduped_id(reply: Sequence[Any]) -> str:
    """The id of the job standing for a deduplicated submit, from enqueue_deduped.lua."""
    return str(reply[1])


def submitted(
    jobs: Sequence[_codec.NewJob], plain: Sequence[_codec.NewJob],
    deduped: Sequence[_codec.NewJob], replies: Sequence[Any],
) -> list[str]:  # fmt: skip
    """The ids standing for a bulk submit whose `plain` jobs were written, from the replies
    to its `deduped` ones; when one of those failed, PartialSubmitError names what was
    written (the plain jobs, the deduplicated ones that came back) and what was not."""
    standing = {job.id: job.id for job in plain}
    refused: list[str] = []
    unknown: list[str] = []
    error: StreamJobsError | None = None
    for job, reply in zip(deduped, replies):
        if isinstance(reply, StreamJobsError):
            (unknown if isinstance(reply, ReplyLost) else refused).append(job.id)
            error = error or (reply.error if isinstance(reply, ReplyLost) else reply)
        else:
            standing[job.id] = deduped_id(reply)
    if error is not None:
        ids = [job.id for job in jobs]
        raise PartialSubmitError(ids, list(standing), refused, unknown, error) from error
    return [standing[job.id] for job in jobs]


def cancel_outcome(reply: Any) -> CancelOutcome:
    """cancel.lua's return code as what `cancel_job` did."""
    return _CANCEL_OUTCOMES.get(int(reply), CancelOutcome.NOTHING)


_CANCEL_OUTCOMES = {1: CancelOutcome.CANCELLED, 2: CancelOutcome.REQUESTED}


def _settled(reply: Any) -> None:
    """The one place where a settling script's return code becomes an exception."""
    if reply == 0:
        raise LeaseLostError("the job's lease passed to another worker; its outcome stands")


def enqueued(jobs: Sequence[_codec.NewJob], replies: Sequence[Any]) -> list[bool]:
    """Per job, True enqueued or False its id was taken, from enqueue.lua's outcomes (one per
    ENQUEUE_CHUNK jobs, see `Driver.eval_many`). When Redis refused every chunk, nothing was
    written: the first refusal is raised as itself. When some chunk failed and some other was
    written, or lost its reply, PartialSubmitError names the ids written, refused and unknown
    (the caller may not know the ids: they may have been generated)."""
    if not any(isinstance(reply, StreamJobsError) for reply in replies):
        return [bool(code) for reply in replies for code in reply]
    written: list[str] = []
    refused: list[str] = []
    unknown: list[str] = []
    error: StreamJobsError | None = None
    for n, reply in enumerate(replies):
        ids = [job.id for job in jobs[n * ENQUEUE_CHUNK : (n + 1) * ENQUEUE_CHUNK]]
        if isinstance(reply, ReplyLost):
            unknown += ids
            error = error or reply.error
        elif isinstance(reply, StreamJobsError):
            refused += ids
            error = error or reply
        else:
            written += ids
    assert error is not None
    if not written and not unknown:
        raise error
    ids = [job.id for job in jobs]
    raise PartialSubmitError(ids, written, refused, unknown, error) from error


def _delivery(raw: Sequence[Any], consumer: str) -> Delivery:
    record = _codec.pairs(raw[2])
    try:
        job: JobDefinition | None = _codec.definition(record)
    except (ValueError, KeyError, TypeError):
        job = None
    return Delivery(job, record, int(raw[0]) - 1, str(raw[1]), consumer)


class RedisJobQueue:
    """One named queue in Redis: submit, start, settle, promote, reclaim and inspect jobs."""

    def __init__(
        self,
        redis_url: str | None = None,
        key_prefix: str = "streamjobs:",
        max_dead_letters: int = 10_000,
        *,
        name: str = "default",
        result_ttl: float = 86_400,
        events_maxlen: int = 10_000,
        max_payload: int = _codec.DEFAULT_MAX_PAYLOAD,
        driver: str | None = None,
    ) -> None:
        if "{" in key_prefix or "}" in key_prefix or "{" in name or "}" in name:
            raise ConfigurationError("key_prefix and name must not contain '{' or '}'")
        if max_dead_letters < 1 or result_ttl <= 0 or events_maxlen < 0:
            raise ConfigurationError("max_dead_letters >= 1, result_ttl > 0, events_maxlen >= 0")
        self.redis_url = redis_url or os.environ.get("REDIS_URL") or DEFAULT_URL
        self.keys = QueueKeys(key_prefix, name)
        self.max_dead_letters = max_dead_letters
        self.result_ttl = result_ttl
        self.events_maxlen = events_maxlen
        self.max_payload = max_payload
        self._common = (events_maxlen, int(result_ttl * 1000), max_dead_letters)
        self.driver_name = driver
        self._driver: Driver | None = None
        #: Redis' maxmemory-policy as read at connect (None when Redis would not say).
        self.maxmemory_policy: str | None = None
        #: What the queue runs on, known once connected: "Redis" (one server), or
        #: "Redis Cluster (3 primaries)" when the URL named a node of a cluster.
        self.topology: str | None = None
        #: What watches this queue's jobs: metrics and traces (see `_observe`).
        self.observers = default_observers(name)

    # -- lifetime -------------------------------------------------------------------------

    @property
    def driver(self) -> Driver:
        """The connected driver; raises until `connect()` ran."""
        if self._driver is None:
            raise ConfigurationError("the queue is not connected: call initialize() first")
        return self._driver

    async def connect(self) -> None:
        """Connect, check the server (Redis >= 6.2) and create the consumer groups."""
        if self._driver is not None:
            return
        driver = self._driver = await open_driver(self.redis_url, self.driver_name)
        try:
            check_version(await driver.server_version())
            self.topology = getattr(driver, "topology", "Redis")
            await self.ensure_groups()
            self.maxmemory_policy = await self._read_maxmemory_policy()
        except BaseException:
            self._driver = None
            await driver.aclose()
            raise
        warn_if_evicting(self.maxmemory_policy)

    async def _read_maxmemory_policy(self) -> str | None:
        """CONFIG GET, else INFO memory (managed Redis often refuses CONFIG), else None."""
        try:
            if policy := await self.driver.config_get("maxmemory-policy"):
                return policy
        except StreamJobsError as exc:
            log.debug("CONFIG GET maxmemory-policy refused (%s); asking INFO memory", exc)
        try:
            return (await self.driver.info("memory")).get("maxmemory_policy") or None
        except StreamJobsError as exc:
            log.debug("cannot tell Redis' maxmemory-policy: %s", exc)
            return None

    async def ensure_groups(self) -> None:
        """Create the consumer groups again (after a FLUSHALL or a restart without data)."""
        for stream in self.keys.streams:
            await self.driver.create_group(stream, GROUP)

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.aclose()

    def script_args(self, *args: Any) -> tuple[Any, ...]:
        """A script's ARGV: the arguments every script takes, then its own."""
        return (*self._common, *args)

    async def _run(self, name: str, *args: Any) -> Any:
        return await self.driver.eval(script(name), self.keys.all, self.script_args(*args))

    # -- submitting -----------------------------------------------------------------------

    def enqueue_calls(self, jobs: Sequence[_codec.NewJob]) -> list[tuple[Any, ...]]:
        """enqueue.lua's ARGV for validated jobs, ENQUEUE_CHUNK jobs per call."""
        calls = []
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            flat: list[Any] = []
            for job in jobs[start : start + ENQUEUE_CHUNK]:
                flat += (job.id, int(job.priority), job.delay_ms, len(job.fields), *job.fields)
            calls.append(self.script_args(*flat))
        return calls

    async def enqueue(self, job: _codec.NewJob) -> bool:
        """Write a validated job; False when its id already had a record (nothing written)."""
        [call] = self.enqueue_calls([job])
        [code] = await self.driver.eval(script("enqueue"), self.keys.all, call)
        return bool(code)

    async def enqueue_many(self, jobs: Sequence[_codec.NewJob]) -> list[bool]:
        """Write many jobs in one round trip; each chunk of them is one atomic enqueue (see
        `enqueued` for what a failed chunk raises)."""
        calls = self.enqueue_calls(jobs)
        return enqueued(jobs, await self.driver.eval_many(script("enqueue"), self.keys.all, calls))

    def enqueue_deduped_call(self, job: _codec.NewJob) -> tuple[Any, ...]:
        """enqueue_deduped.lua's ARGV for a validated job with a dedupe key; its KEYS are
        `keys.deduping`."""
        assert job.dedupe is not None
        d = job.dedupe
        return self.script_args(
            job.id, int(job.priority), job.delay_ms, d.key, d.mode, d.window_ms, len(job.fields),
            *job.fields,
        )  # fmt: skip

    async def enqueue_deduped(self, job: _codec.NewJob) -> str:
        """Write a job with a dedupe key unless its key's job stands for it; the id of the
        job that does (this one when it was queued)."""
        call = self.enqueue_deduped_call(job)
        reply = await self.driver.eval(script("enqueue_deduped"), self.keys.deduping, call)
        return deduped_id(reply)

    async def submit(self, jobs: Sequence[_codec.NewJob]) -> list[str]:
        """Write many jobs, those with a dedupe key one script call each (pipelined in one
        round trip); the ids that stand for them, in order (see `submitted`)."""
        deduped = [job for job in jobs if job.dedupe is not None]
        if not deduped:
            await self.enqueue_many(jobs)
            return [job.id for job in jobs]
        plain = [job for job in jobs if job.dedupe is None]
        if plain:
            await self.enqueue_many(plain)
        calls = [self.enqueue_deduped_call(job) for job in deduped]
        replies = await self.driver.eval_many(script("enqueue_deduped"), self.keys.deduping, calls)
        return submitted(jobs, plain, deduped, replies)

    async def cancel(self, job_id: str) -> CancelOutcome:
        """End a job CANCELLED, and tell its pool to stop it when it runs (cancel.lua)."""
        return cancel_outcome(await self._run("cancel", job_id, CONTROL_TTL_MS))

    async def retry_dead_letter(self, job_id: str) -> bool:
        """Queue a dead-lettered job again with fresh attempts."""
        return bool(await self._run("retry_dead_letter", job_id))

    # -- working --------------------------------------------------------------------------

    async def start(self, consumer: str, count: int, *, lease_ms: int = 0) -> list[Delivery]:
        """Start up to `count` new jobs, highest priority first. `lease_ms`, the consumer's
        lease, is recorded as each job's own: reclaim takes a job over only once idle past
        it (0 records none, and the reclaimer's lease applies)."""
        reply = await self._run("start", consumer, count, lease_ms)
        return [_delivery(raw, consumer) for raw in reply]

    async def wait_for_jobs(
        self, consumer: str, count: int, block_ms: int, *, lease_ms: int = 0
    ) -> list[Delivery]:
        """Block until a job is made ready (or block_ms passes), then start up to `count`
        (as `start`): start.lua goes out in the same write as the blocking pop, so Redis runs
        it the moment the pop returns, and waking costs no round trip of its own."""
        reply = await self.driver.wait_list_then_eval(
            self.keys.ready, block_ms / 1000, script("start"), self.keys.all,
            self.script_args(consumer, count, lease_ms),
        )  # fmt: skip
        return [_delivery(raw, consumer) for raw in reply]

    async def reclaim(
        self, consumer: str, count: int, lease_ms: int, max_crashes: int, cursors: list[str]
    ) -> list[Delivery]:
        """Take over and start entries idle past their job's own lease (`lease_ms` for a job
        that recorded none; recorded for the jobs started here); `cursors` (one per stream)
        is updated in place."""
        reply = await self._run("reclaim", consumer, count, lease_ms, max_crashes, *cursors)
        cursors[:] = [str(c) for c in reply[0]]
        return [_delivery(raw, consumer) for raw in reply[1]]

    async def progress(self, d: Delivery, current: object, total: object, message: object) -> bool:
        """Record reported progress; False when the attempt is no longer this consumer's.
        A current or total that is not a number raises TypeError before anything is sent."""
        values = _codec.progress_fields(current, total, message)
        return bool(await self._run("progress", d.job_id, d.consumer, d.attempt, *values))

    def _settle_args(self, d: Delivery) -> tuple[Any, ...]:
        return (d.job_id, d.consumer, d.attempt, d.stream + 1, d.entry)

    async def complete(self, d: Delivery, result_json: str) -> None:
        """Record the result and acknowledge the entry (complete.lua)."""
        [code] = await self.complete_many([(d, result_json)])
        _settled(code)

    async def complete_many(self, done: Sequence[tuple[Delivery, str]]) -> list[int]:
        """Complete many jobs in one script call; per job 1 recorded, 0 refused as stale."""
        flat = [part for d, result in done for part in (*self._settle_args(d), result)]
        return [int(code) for code in await self._run("complete", *flat)]

    async def fail(self, d: Delivery, error: str) -> None:
        """End the job FAILED without retry (fail.lua)."""
        _settled(await self._run("fail", *self._settle_args(d), error))

    async def retry(self, d: Delivery, error: str, delay: float) -> None:
        """Park the job in the delayed set for `delay` seconds (retry.lua)."""
        _settled(await self._run("retry", *self._settle_args(d), error, int(delay * 1000)))

    async def dead_letter(self, d: Delivery, error: str, reason: str) -> None:
        """Move the job to the dead-letter stream (dead_letter.lua)."""
        _settled(await self._run("dead_letter", *self._settle_args(d), error, reason))

    def sync_driver(self) -> SyncDriver:
        """A blocking driver for a thread of this process (lease renewal); once connected,
        the queue knows whether it is on a cluster, and the driver need not ask again."""
        clustered = None if self.topology is None else self.topology.startswith("Redis Cluster")
        return SyncDriver(self.redis_url, cluster=clustered)

    def extend_leases(
        self, driver: SyncDriver, consumer: str, held: Sequence[tuple[str, int, str]]
    ) -> list[str]:
        """Renew (job id, stream, entry) leases from a thread; returns the job ids lost."""
        flat = [part for job_id, stream, entry in held for part in (stream, entry, job_id)]
        args = self.script_args(consumer, *flat)
        return list(driver.eval(script("extend_lease"), self.keys.all, args))

    async def release(self, consumer: str, only: Sequence[Delivery] = ()) -> int:
        """Hand back every entry the consumer holds (or `only` those jobs) to the tail of
        their streams; returns how many jobs went back."""
        pairs = [part for d in only for part in (d.stream + 1, d.entry)]
        return int(await self._run("release", consumer, *pairs))

    async def reap_consumers(self) -> int:
        """Remove the consumers of pools with no heartbeat that hold no entry from the
        groups; returns how many were removed (one per group)."""
        return int(await self._run("reap_consumers"))

    async def purge_dead_letters(self, limit: int) -> tuple[int, int]:
        """Delete up to `limit` of the oldest dead letters and their records for good;
        returns (purged, left)."""
        purged, left = await self._run("purge_dead_letters", limit)
        return int(purged), int(left)

    async def promote(self, limit: int = 1000) -> float | None:
        """Queue due delayed jobs; seconds until the next is due (0: more now, None: none)."""
        reply = int(await self._run("promote", limit))
        return None if reply < 0 else reply / 1000

    async def wait_for_wake(self, timeout: float) -> bool:
        """Block until a sooner delayed job is submitted, or `timeout` seconds pass."""
        return await self.driver.wait_list(self.keys.wake, timeout)

    async def wait_for_cancel(self, pool_id: str, timeout: float) -> str | None:
        """Block until a running job of this pool is cancelled (its id) or `timeout` passes."""
        return await self.driver.pop_list(self.keys.control(pool_id), timeout)

    async def heartbeat(self, pool_id: str, ttl: float, record: dict[str, str]) -> None:
        """Register a worker pool as alive for `ttl` seconds."""
        flat = [part for item in record.items() for part in item]
        await self._run("heartbeat", pool_id, int(ttl * 1000), *flat)

    async def deregister(self, pool_id: str) -> None:
        """Remove a worker pool from the registry."""
        await self._run("deregister", pool_id)

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
        return _codec.with_id(job_id, await self.driver.hgetall(self.keys.job(job_id)))

    async def status(self, job_id: str) -> JobStatus | None:
        """A job's status, or None when unknown or expired."""
        raw = await self.driver.hget(self.keys.job(job_id), "status")
        return JobStatus(raw) if raw else None

    async def dead_letters(self, limit: int) -> list[JobDefinition]:
        """The newest dead letters, newest first."""
        entries = await self.driver.stream_range(self.keys.dead, limit, reverse=True)
        return [_codec.dead_letter(entry, fields) for entry, fields in entries]

    async def snapshot(self, max_pool_age: float) -> list[Any]:
        """The raw reply of metrics.lua (see there)."""
        return list(await self._run("metrics", int(max_pool_age * 1000)))

    async def last_event_id(self) -> str:
        """The id of the newest event ("0-0" when there is none): follow from there."""
        newest = await self.driver.stream_range(self.keys.events, 1, reverse=True)
        return newest[0][0] if newest else "0-0"

    async def read_events(
        self, last_id: str, count: int = 100, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Events after `last_id` ("$" for only new ones), oldest first."""
        return await self.driver.read_stream(self.keys.events, last_id, count, block_ms)


class _GuideCompat:
    """The guide's troubleshooting snippet reads `queue._redis.hget(queue._key("error"), id)`:
    this keeps it working by reading the error from the job's record."""

    def __init__(self, queue: RedisJobQueue) -> None:
        self._queue = queue

    async def hget(self, key: str, field: str) -> str | None:
        if key == self._queue._key("error"):
            return await self._queue.driver.hget(self._queue.keys.job(field), "error")
        return await self._queue.driver.hget(key, field)
