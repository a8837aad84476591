"""What every queue call stands on: its settings, its partitions (the keys of each, and
where a job lives), its connection, and running a script on one partition."""

from __future__ import annotations

import itertools
import logging
import os
import random
import zlib
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, TypeVar

from . import _codec
from ._drivers import Driver, open_driver
from ._drivers._replicas import DEFAULT_WAIT_TIMEOUT, wait_for
from ._keys import GROUP, MAX_PARTITIONS, QueueKeys, partition_of, partitions_key
from ._observe import default_observers
from ._replies import check_version, gather, replicated_anyway, warn_if_evicting
from ._scripts import script
from .errors import ConfigurationError, InvalidJobError, ReplicationError, StreamJobsError

DEFAULT_URL = "redis://localhost:6379/0"

log = logging.getLogger("streamjobs")

T = TypeVar("T")


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


class QueueBase:
    """A queue's settings, partitions and connection (see `RedisJobQueue`)."""

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
