"""The queue layer: the key schema, the Lua scripts, and one typed call per transition.

A queue has one partition unless made with more (`partitions=N`): each partition is a whole
queue of its own under its own hash tag (see `_keys`), and every script touches one
partition only. Calls about one job go to the job's partition (its id says which, see
`partition_of`); calls about the whole queue go to every partition, one call each, issued
concurrently. The count is recorded in Redis at connect, so every client agrees on it.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio

from . import _codec, _limits
from ._drivers import Driver, open_driver
from ._drivers._pipeline import ReplyLost
from ._drivers._replicas import DEFAULT_WAIT_TIMEOUT, wait_for
from ._drivers.redis_sync import SyncDriver
from ._keys import GROUP, MAX_PARTITIONS, QueueKeys, partition_of, partitions_key
from ._observe import default_observers
from ._scripts import script
from .errors import (
    ConfigurationError,
    InvalidJobError,
    PartialSubmitError,
    RedisVersionError,
    ReplicationError,
    StreamJobsError,
)
from .models import CancelOutcome, JobDefinition, JobStatus, LimitInfo

DEFAULT_URL = "redis://localhost:6379/0"
#: Jobs per enqueue.lua call in a bulk submit: calls stay short, so Redis never stalls long.
ENQUEUE_CHUNK = 200
#: The script that submits jobs, by whether they carry a limit key (queued fairly).
ENQUEUE = {False: "enqueue", True: "enqueue_fair"}
MIN_REDIS = (6, 2)
#: How long a pool's control list outlives its last push (ms): a live pool pops at once, and
#: one that died leaves nothing behind for long.
CONTROL_TTL_MS = 600_000

log = logging.getLogger("streamjobs")

T = TypeVar("T")


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run calls concurrently in a task group (one per partition); their results in order.
    When Redis fails some, the others still finish, and the first failure is raised as
    itself, as with one partition: callers that back off on a StreamJobsError (a worker's
    loops, through a failover that takes down the primary of a few partitions) never meet
    an exception group."""
    if len(calls) == 1:
        return [await calls[0]()]
    results: list[Any] = [None] * len(calls)
    failures: list[StreamJobsError] = []

    async def one(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except StreamJobsError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(one, i)
    if failures:
        raise failures[0]
    return results


def check_partitions(partitions: object) -> int | None:
    """A partition count as given (None: the recorded one); ConfigurationError unless an int
    from 1 to 1024."""
    if partitions is None:
        return None
    if not isinstance(partitions, int) or isinstance(partitions, bool):
        raise ConfigurationError(f"partitions must be an int from 1 to {MAX_PARTITIONS}")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ConfigurationError(f"partitions must be from 1 to {MAX_PARTITIONS}, not {partitions}")
    return partitions


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


def dependent_codes(reply: Sequence[Any]) -> list[bool]:
    """enqueue_dependent.lua's reply as one bool per job (False: its id was taken);
    InvalidJobError for a dependency without a record (nothing was written)."""
    if str(reply[0]) == "unknown":
        raise InvalidJobError(
            "depends_on",
            f"no job {reply[1]!s} (never submitted, or its result expired); nothing was written",
        )
    return [bool(code) for code in reply[1]]


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
    chunks = [
        range(n, min(n + ENQUEUE_CHUNK, len(jobs))) for n in range(0, len(jobs), ENQUEUE_CHUNK)
    ]
    return enqueued_chunks(jobs, list(zip(chunks, replies)))


def enqueued_chunks(
    jobs: Sequence[_codec.NewJob], chunks: Sequence[tuple[Sequence[int], Any]]
) -> list[bool]:
    """As `enqueued`, for chunks given as (positions in `jobs`, reply): a submit spread over
    partitions sends each partition its own chunks."""
    codes = [False] * len(jobs)
    if not any(isinstance(reply, StreamJobsError) for _, reply in chunks):
        for at, reply in chunks:
            for i, code in zip(at, reply):
                codes[i] = bool(code)
        return codes
    written: list[str] = []
    refused: list[str] = []
    unknown: list[str] = []
    error: StreamJobsError | None = None
    for at, reply in chunks:
        ids = [jobs[i].id for i in at]
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


def enqueued_replicated(jobs: Sequence[_codec.NewJob], exc: ReplicationError) -> Exception:
    """The error for a bulk submit whose WAIT fell short: every chunk written, the shortfall
    naming their jobs; some chunk refused or lost, PartialSubmitError (caused by the
    shortfall) naming written, refused and unknown ids as `enqueued` does."""
    replies = exc.reply if isinstance(exc.reply, list) else []
    try:
        enqueued(jobs, replies)
    except PartialSubmitError as partial:
        partial.__cause__ = exc.for_jobs(partial.written)
        return partial
    except StreamJobsError as error:  # nothing written after all
        return error
    return exc.for_jobs([job.id for job in jobs])


def replicated_anyway(name: str, exc: ReplicationError) -> Any:
    """A worker's change that too few replicas acknowledged: it stands on the primary, so
    its reply is used; the shortfall is logged."""
    log.warning("%s: %s", name, exc)
    return exc.reply


def _delivery(raw: Sequence[Any], consumer: str, partition: int = 0) -> Delivery:
    record = _codec.pairs(raw[2])
    try:
        job: JobDefinition | None = _codec.definition(record)
    except (ValueError, KeyError, TypeError):
        job = None
    return Delivery(job, record, int(raw[0]) - 1, str(raw[1]), consumer, partition)


def newest_first(entries: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Stream entries of many partitions, newest first by entry id (ids are times)."""

    def order(item: tuple[str, Any]) -> tuple[int, int]:
        ms, _, seq = item[0].partition("-")
        return int(ms), int(seq or 0)

    return sorted(entries, key=order, reverse=True)


class RedisJobQueue:
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
        partitions: int | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        if "{" in key_prefix or "}" in key_prefix or "{" in name or "}" in name:
            raise ConfigurationError("key_prefix and name must not contain '{' or '}'")
        if max_dead_letters < 1 or result_ttl <= 0 or events_maxlen < 0:
            raise ConfigurationError("max_dead_letters >= 1, result_ttl > 0, events_maxlen >= 0")
        self.redis_url = redis_url or os.environ.get("REDIS_URL") or DEFAULT_URL
        #: The partition count asked for (None: whatever is recorded in Redis).
        self.partitions = check_partitions(partitions)
        self._n = 0  # the partition count in use; 0 until known
        self._key_prefix, self._name = key_prefix, name
        self._use_partitions(self.partitions or 1)
        self._n = self.partitions or 0
        self._spread = itertools.count(random.randrange(MAX_PARTITIONS))
        self.max_dead_letters = max_dead_letters
        self.result_ttl = result_ttl
        self.events_maxlen = events_maxlen
        self.max_payload = max_payload
        self._common = (events_maxlen, int(result_ttl * 1000), max_dead_letters)
        self.driver_name = driver
        #: WAIT after every state change (None: `wait_replicas=0`, no WAIT); see `_replicas`.
        self.wait = wait_for(wait_replicas, wait_timeout)
        self.wait_replicas, self.wait_timeout = wait_replicas, wait_timeout
        self._driver: Driver | None = None
        #: Redis' maxmemory-policy as read at connect (None when Redis would not say).
        self.maxmemory_policy: str | None = None
        #: What the queue runs on, known once connected: "Redis" (one server), or
        #: "Redis Cluster (3 primaries)" when the URL named a node of a cluster.
        self.topology: str | None = None
        #: What watches this queue's jobs: metrics and traces (see `_observe`).
        self.observers = default_observers(name)

    # -- partitions -----------------------------------------------------------------------

    def _use_partitions(self, n: int) -> None:
        """Set the key schema for `n` partitions: `keys` stays partition 0's."""
        self._n = n
        self.parts = tuple(
            QueueKeys.partition(self._key_prefix, self._name, p, n) for p in range(n)
        )
        self.keys = self.parts[0]

    @property
    def partition_count(self) -> int:
        """How many partitions the queue has; known once connected (or when given)."""
        if not self._n:
            raise ConfigurationError("the queue's partition count is not known yet: connect first")
        return self._n

    @property
    def partitions_key(self) -> str:
        """The key holding the recorded partition count."""
        return partitions_key(self._key_prefix, self._name)

    def record_partitions_call(self) -> tuple[tuple[str], tuple[Any, ...]]:
        """record_partitions.lua's KEYS and ARGV: the count asked for, else 1."""
        return (self.partitions_key,), self.script_args(self.partitions or 1)

    def adopt_partitions(self, recorded: object) -> None:
        """Use the count Redis recorded; ConfigurationError when it is not the one asked for."""
        n = int(recorded)  # type: ignore[call-overload]
        if self.partitions is not None and n != self.partitions:
            raise ConfigurationError(
                f"queue {self._name!r} has {n} partition(s) recorded in Redis, but "
                f"partitions={self.partitions} was asked for: use {n} (or None to use the "
                "recorded count)"
            )
        if n != self._n or len(self.parts) != n:
            self._use_partitions(n)

    def partition_of(self, job_id: str) -> int:
        """The partition a job lives in (see `_keys.partition_of`)."""
        return partition_of(job_id, self.partition_count)

    def keys_of(self, job_id: str) -> QueueKeys:
        """The keys of the partition a job lives in."""
        n = self.partition_count
        return self.keys if n == 1 else self.parts[partition_of(job_id, n)]

    def place(
        self, job_id: str | None, partition_key: object = None, dedupe_key: object = None,
        depends_on: object = None,
    ) -> str | None:  # fmt: skip
        """The id a new job gets: its own (`job_id`), else, with many partitions, a fresh one
        carrying its partition (`<p>.<random>`): `partition_key`'s (CRC-32 modulo the count),
        else `dedupe_key`'s (so every submit of one dedupe key meets in one partition), else
        the next in turn. None: the codec makes one (one partition). InvalidJobError for a bad
        `partition_key`, or one given with a `job_id` (which decides alone). A job with
        `depends_on` joins its first dependency's partition (see `flow_partition`)."""
        if depends_on and self.partition_count > 1 and job_id is None:
            first = (
                next(iter(depends_on), None)
                if isinstance(depends_on, Iterable) and not isinstance(depends_on, str)
                else None
            )
            if isinstance(first, str):
                if partition_key is not None:
                    raise InvalidJobError(
                        "partition_key", "cannot go with depends_on: a dependent job lives in "
                        "its dependencies' partition")  # fmt: skip
                return f"{self.partition_of(first)}.{_codec.fresh_id()}"
        if partition_key is None and job_id is None and isinstance(dedupe_key, str) and dedupe_key:
            partition_key = dedupe_key if self.partition_count > 1 else None
        if partition_key is not None and (not isinstance(partition_key, str) or not partition_key):
            raise InvalidJobError("partition_key", f"{partition_key!r} must be a non-empty str")
        n = self.partition_count
        if n == 1:
            return job_id
        if job_id is not None:
            if partition_key is not None:
                raise InvalidJobError(
                    "partition_key",
                    "cannot be given with job_id: a job_id decides its own partition",
                )
            return job_id
        if partition_key is None:
            p = next(self._spread) % n
        else:
            p = zlib.crc32(partition_key.encode()) % n
        return f"{p}.{_codec.fresh_id()}"

    async def _each(self, call: Callable[[QueueKeys, int], Awaitable[T]]) -> list[T]:
        """`call(keys, p)` for every partition, concurrently; results by partition."""
        return await gather([partial(call, k, p) for p, k in enumerate(self.parts)])

    # -- lifetime -------------------------------------------------------------------------

    @property
    def driver(self) -> Driver:
        """The connected driver; raises until `connect()` ran."""
        if self._driver is None:
            raise ConfigurationError("the queue is not connected: call initialize() first")
        return self._driver

    async def connect(self) -> None:
        """Connect, check the server (Redis >= 6.2), agree on the partition count with Redis
        (recording it when none is) and create the consumer groups."""
        if self._driver is not None:
            return
        driver = self._driver = await open_driver(self.redis_url, self.driver_name, self.wait)
        try:
            check_version(await driver.server_version())
            self.topology = getattr(driver, "topology", "Redis")
            keys, args = self.record_partitions_call()
            try:
                recorded = await driver.eval(script("record_partitions"), keys, args)
            except ReplicationError as exc:  # the count stands on the primary: use it
                recorded = replicated_anyway("record_partitions", exc)
            self.adopt_partitions(recorded)
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
        """Create the consumer groups again (after a FLUSHALL or a restart without data), the
        partitions' concurrently."""

        async def create(keys: QueueKeys, p: int) -> None:
            for stream in keys.streams:
                await self.driver.create_group(stream, GROUP)

        await self._each(create)

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.aclose()

    def script_args(self, *args: Any) -> tuple[Any, ...]:
        """A script's ARGV: the arguments every script takes, then its own."""
        return (*self._common, *args)

    async def _run(self, name: str, *args: Any, keys: QueueKeys | None = None) -> Any:
        """Run a worker's transition (on partition 0 unless `keys` names another). A
        replication shortfall (`wait_replicas`) is logged, not raised: the change stands on
        the primary, and a worker that took it for a failure would lose track of a job it
        started or settled."""
        keys = keys or self.keys
        try:
            return await self.driver.eval(script(name), keys.all, self.script_args(*args))
        except ReplicationError as exc:
            return replicated_anyway(name, exc)

    async def _run_strict(self, name: str, *args: Any, keys: QueueKeys | None = None) -> Any:
        """Run a caller's transition (cancel, retry a dead letter, purge): a replication
        shortfall is raised to the caller."""
        keys = keys or self.keys
        return await self.driver.eval(script(name), keys.all, self.script_args(*args))

    async def run_schedules(self, name: str, *args: Any) -> Any:
        """Run a schedule script: every script's KEYS, then the schedule keys."""
        return await self.driver.eval(script(name), self.keys.scheduling, self.script_args(*args))

    # -- submitting -----------------------------------------------------------------------

    def enqueue_calls(
        self, jobs: Sequence[_codec.NewJob], fair: bool = False
    ) -> list[tuple[Any, ...]]:
        """enqueue.lua's ARGV for validated jobs, ENQUEUE_CHUNK jobs per call; with `fair`,
        enqueue_fair.lua's (jobs with a limit key: the key after the delay)."""
        calls = []
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            flat: list[Any] = []
            for job in jobs[start : start + ENQUEUE_CHUNK]:
                if fair:
                    flat += (job.id, int(job.priority), job.delay_ms, job.limit_key)
                    flat += (len(job.fields), *job.fields)
                else:
                    flat += (job.id, int(job.priority), job.delay_ms, len(job.fields), *job.fields)
            calls.append(self.script_args(*flat))
        return calls

    def by_partition(self, ids: Sequence[str]) -> dict[int, list[int]]:
        """Positions of the ids by the partition each lives in, in order."""
        groups: dict[int, list[int]] = {}
        n = self.partition_count
        for i, job_id in enumerate(ids):
            groups.setdefault(partition_of(job_id, n), []).append(i)
        return groups

    async def enqueue(self, job: _codec.NewJob) -> bool:
        """Write a validated job; False when its id already had a record (nothing written).
        A replication shortfall raises ReplicationError naming the job (it was written)."""
        fair = job.limit_key is not None
        [call] = self.enqueue_calls([job], fair)
        keys = self.keys if self._n == 1 else self.keys_of(job.id)
        try:
            [code] = await self.driver.eval(script(ENQUEUE[fair]), keys.all, call)
        except ReplicationError as exc:
            raise exc.for_jobs([job.id]) from None
        return bool(code)

    async def enqueue_many(self, jobs: Sequence[_codec.NewJob]) -> list[bool]:
        """Write many jobs in one round trip per partition; each chunk of them is one atomic
        enqueue on one partition (see `enqueued` for what a failed chunk raises, and
        `enqueued_replicated` for a replication shortfall). Jobs with a limit key go in
        chunks of their own, queued fairly (enqueue_fair.lua)."""
        keyed = [i for i, job in enumerate(jobs) if job.limit_key is not None]
        if not keyed:
            return await self._enqueue_many(jobs, False)
        plain = [i for i, job in enumerate(jobs) if job.limit_key is None]
        codes = [False] * len(jobs)
        for at, fair in ((plain, False), (keyed, True)):
            if at:
                for i, code in zip(at, await self._enqueue_many([jobs[i] for i in at], fair)):
                    codes[i] = code
        return codes

    async def _enqueue_many(self, jobs: Sequence[_codec.NewJob], fair: bool) -> list[bool]:
        name = ENQUEUE[fair]
        if self._n == 1:
            calls = self.enqueue_calls(jobs, fair)
            try:
                replies = await self.driver.eval_many(script(name), self.keys.all, calls)
            except ReplicationError as exc:
                raise enqueued_replicated(jobs, exc) from None
            return enqueued(jobs, replies)
        groups = list(self.by_partition([job.id for job in jobs]).items())

        async def send(p: int, at: list[int]) -> list[tuple[Sequence[int], Any]]:
            part = [jobs[i] for i in at]
            calls = self.enqueue_calls(part, fair)
            try:
                replies = await self.driver.eval_many(script(name), self.parts[p].all, calls)
            except ReplicationError as exc:
                raise enqueued_replicated(part, exc) from None
            starts = range(0, len(at), ENQUEUE_CHUNK)
            return [(at[s : s + ENQUEUE_CHUNK], r) for s, r in zip(starts, replies)]

        sent = await gather([partial(send, p, at) for p, at in groups])
        return enqueued_chunks(jobs, [chunk for part in sent for chunk in part])

    def enqueue_deduped_call(self, job: _codec.NewJob) -> tuple[Any, ...]:
        """enqueue_deduped.lua's ARGV for a validated job with a dedupe key; its KEYS are
        its partition's `deduping`."""
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
        keys = self.keys_of(job.id).deduping
        try:
            reply = await self.driver.eval(script("enqueue_deduped"), keys, call)
        except ReplicationError as exc:
            raise exc.for_jobs([deduped_id(exc.reply)]) from None
        return deduped_id(reply)

    # -- dependencies (enqueue_dependent.lua) ---------------------------------------------

    def flow_partition(self, jobs: Sequence[_codec.NewJob]) -> QueueKeys:
        """The keys of the one partition that jobs written by one enqueue_dependent call,
        and every job they depend on, live in: a script touches one partition only, and a
        dependency's settle releases its dependents in the same script. InvalidJobError
        when they span partitions."""
        n = self.partition_count
        if n == 1:
            return self.keys
        p = partition_of(jobs[0].id, n)
        for job in jobs:
            for job_id in (job.id, *job.depends_on):
                if partition_of(job_id, n) != p:
                    raise InvalidJobError(
                        "depends_on",
                        f"job {job.id!r} and its dependencies span partitions ({job_id!r} "
                        f"lives in partition {partition_of(job_id, n)}, not {p}): on a "
                        "partitioned queue a job and its dependencies share a partition",
                    )  # fmt: skip
        return self.parts[p]

    def enqueue_dependent_call(self, jobs: Sequence[_codec.NewJob]) -> tuple[Any, ...]:
        """enqueue_dependent.lua's ARGV for validated jobs (those without dependencies
        are queued at once), in order: a job may depend on jobs before it."""
        flat: list[Any] = []
        for job in jobs:
            deps = job.depends_on
            flat += (job.id, int(job.priority), job.delay_ms, job.on_dependency_failure,
                     len(deps), *deps, len(job.fields), *job.fields)  # fmt: skip
        return self.script_args(*flat)

    def flow_jobs(
        self, steps: Sequence[object], after: Sequence[Sequence[int]]
    ) -> list[_codec.NewJob]:
        """Validated jobs of a chain or a group: step i (a mapping of submit_job's keywords,
        as submit_many takes) depends on the steps at `after[i]`, and on its own
        `depends_on` when given. Each step gets an id before anything is written (its own
        `job_id` kept); with many partitions all share one: a given job_id's, else the first
        step's `partition_key`'s, else the next in turn. Raises InvalidJobError naming the
        step (`jobs[2].timeout: ...`)."""
        specs: list[dict[str, Any]] = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping):
                raise InvalidJobError(f"jobs[{i}]", "must be a dict of submit_job keywords")
            if step.get("dedupe_key") is not None:
                raise InvalidJobError(f"jobs[{i}].dedupe_key", "cannot be used in a chain or group")
            own = step.get("depends_on")
            if own is not None and (isinstance(own, (str, bytes)) or not isinstance(own, Iterable)):
                raise InvalidJobError(f"jobs[{i}].depends_on", "must be a list of job ids")
            specs.append(dict(step))
        n = self.partition_count
        prefix = ""
        if n > 1:
            given = next((s["job_id"] for s in specs if isinstance(s.get("job_id"), str)), None)
            key = specs[0].get("partition_key") if specs and given is None else None
            placed = given or self.place(None, key)
            assert placed is not None
            prefix = f"{partition_of(placed, n)}."
        for spec in specs:
            spec.pop("partition_key", None)
            if spec.get("job_id") is None:
                spec["job_id"] = prefix + _codec.fresh_id()
        for spec, before in zip(specs, after):
            deps = [specs[j]["job_id"] for j in before] + list(spec.get("depends_on") or ())
            if deps:
                spec["depends_on"] = deps
        return _codec.new_jobs(specs, self.max_payload)

    async def enqueue_dependent(self, jobs: Sequence[_codec.NewJob]) -> list[bool]:
        """Write jobs with their dependency edges in one script call, all or nothing: per
        job True written, False its id was taken; InvalidJobError naming a dependency that
        has no record (nothing written)."""
        keys = self.flow_partition(jobs)
        reply = await self.driver.eval(
            script("enqueue_dependent"), keys.all, self.enqueue_dependent_call(jobs)
        )
        return dependent_codes(reply)

    async def submit(self, jobs: Sequence[_codec.NewJob]) -> list[str]:
        """Write many jobs, those with a dedupe key one script call each (pipelined in one
        round trip per partition), those with dependencies after the others, one
        enqueue_dependent call per partition; the ids that stand for them, in order (see
        `submitted`)."""
        if any(job.depends_on for job in jobs):
            return await self._submit_dependent(jobs)
        deduped = [job for job in jobs if job.dedupe is not None]
        if not deduped:
            await self.enqueue_many(jobs)
            return [job.id for job in jobs]
        plain = [job for job in jobs if job.dedupe is None]
        if plain:
            await self.enqueue_many(plain)
        groups = list(self.by_partition([job.id for job in deduped]).items())

        async def send(p: int, at: list[int]) -> list[Any]:
            calls = [self.enqueue_deduped_call(deduped[i]) for i in at]
            try:
                return await self.driver.eval_many(
                    script("enqueue_deduped"), self.parts[p].deduping, calls
                )
            except ReplicationError as exc:  # each job, or the one standing for it, is written
                raise exc.for_jobs([job.id for job in jobs]) from None

        sent = await gather([partial(send, p, at) for p, at in groups])
        replies: list[Any] = [None] * len(deduped)
        for (_, at), got in zip(groups, sent):
            for i, reply in zip(at, got):
                replies[i] = reply
        return submitted(jobs, plain, deduped, replies)

    async def _submit_dependent(self, jobs: Sequence[_codec.NewJob]) -> list[str]:
        """`submit` for jobs some of which depend on others: the rest first, then the
        dependent ones (which may depend on those) per partition, each partition's in one
        call, in their order."""
        rest = [job for job in jobs if not job.depends_on]
        standing = dict(zip([job.id for job in rest], await self.submit(rest) if rest else []))
        waiting = [job for job in jobs if job.depends_on]
        by_part = self.by_partition([job.id for job in waiting])
        groups = [[waiting[i] for i in at] for at in by_part.values()]
        for group in groups:
            self.flow_partition(group)  # every check before the first write
        await gather([partial(self.enqueue_dependent, group) for group in groups])
        return [standing.get(job.id, job.id) for job in jobs]

    async def cancel(self, job_id: str) -> CancelOutcome:
        """End a job CANCELLED, and tell its pool to stop it when it runs (cancel.lua)."""
        keys = self.keys_of(job_id)
        return cancel_outcome(await self._run_strict("cancel", job_id, CONTROL_TTL_MS, keys=keys))

    async def retry_dead_letter(self, job_id: str) -> bool:
        """Queue a dead-lettered job again with fresh attempts."""
        keys = self.keys_of(job_id)
        return bool(await self._run_strict("retry_dead_letter", job_id, keys=keys))

    # -- limits ---------------------------------------------------------------------------

    async def set_limit(self, key: str, concurrency: int | None, rate: str | None) -> None:
        """Set a limit key's limit in every partition (see `_limits.limit_args`): jobs with
        an explicit limit key all live in its partition, so that one enforces it."""
        args = _limits.limit_args(key, concurrency, rate)
        await self._each(lambda k, p: self._run("set_limit", *args, keys=k))

    async def remove_limit(self, key: str) -> bool:
        """Drop a limit key's limit everywhere, its parked jobs queued again; False when it
        had none."""
        name = _limits.check_key(key)
        return any(await self._each(lambda k, p: self._run("remove_limit", name, keys=k)))

    async def get_limits(self) -> list[LimitInfo]:
        """Every limit with its running and waiting jobs, by key."""
        return _limits.limits_from(await self._each(lambda k, p: self._run("get_limits", keys=k)))

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


def merge_snapshots(snapshots: Sequence[Any]) -> list[Any]:
    """One metrics.lua reply from one per partition: lengths and counters summed, the oldest
    undelivered entry's age the greatest; the pools from the first (every pool registers in
    every partition)."""
    first = list(snapshots[0])
    if len(snapshots) == 1:
        return first
    streams = [[0, 0, -1] for _ in first[0]]
    stats: dict[str, int] = {}
    delayed = dead = 0
    for snap in snapshots:
        for total, (length, delivered, age) in zip(streams, snap[0]):
            total[0] += int(length)
            total[1] += int(delivered)
            total[2] = max(total[2], int(age))
        delayed, dead = delayed + int(snap[1]), dead + int(snap[2])
        for name, value in _codec.pairs(snap[3]).items():
            stats[name] = stats.get(name, 0) + int(value)
    flat = [x for item in stats.items() for x in item]
    return [streams, delayed, dead, flat, first[4], first[5]]


class _GuideCompat:
    """The guide's troubleshooting snippet reads `queue._redis.hget(queue._key("error"), id)`:
    this keeps it working by reading the error from the job's record."""

    def __init__(self, queue: RedisJobQueue) -> None:
        self._queue = queue

    async def hget(self, key: str, field: str) -> str | None:
        if key == self._queue._key("error"):
            return await self._queue.driver.hget(self._queue.keys_of(field).job(field), "error")
        return await self._queue.driver.hget(key, field)
