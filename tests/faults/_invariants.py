"""The invariant every fault scenario ends with (`check_invariants`).

1. Each submitted job is in exactly one place: a terminal state (and in no stream, nor the
   delayed set; in the dead-letter stream exactly when DEAD_LETTER), or still queued (PENDING
   with one entry in its priority stream, SCHEDULED/RETRYING in the delayed set).
2. Its handler's side effect happened at least once (COMPLETED jobs ran per the ledger), no
   run was an attempt the record does not know, and a completed job ran no attempt after the
   one that completed it (an acknowledged job never runs again).
3. No entry sits in a consumer group's pending list without a live lease: each belongs to a
   RUNNING job of that consumer, is fresher than the lease allows, and its pool heartbeats.
4. The delayed set holds only future entries (promoters given `promote_slack` seconds).
5. The metrics' counters and gauges agree with the records.
6. On a partitioned queue, all of the above in every partition, and each job's record, entry
   and delayed member in its own partition only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import redis

from streamjobs import JobService, RedisJobQueue
from streamjobs._keys import QueueKeys, partition_of

TERMINAL = {"COMPLETED", "FAILED", "DEAD_LETTER", "CANCELLED"}
QUEUED = {"PENDING", "SCHEDULED", "RETRYING"}
PRIORITY_STREAM = {"30": 0, "20": 1, "10": 2, "0": 3}


@dataclass
class Report:
    """What the check saw, for scenario-specific assertions on top."""

    records: dict[str, dict[str, str]]
    statuses: Counter[str]
    runs: dict[str, int]
    metrics: dict[str, Any]
    foreign_dead: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def status(self, job_id: str) -> str | None:
        return self.records.get(job_id, {}).get("status")


def partitions(client: redis.Redis, keys: QueueKeys) -> list[QueueKeys]:
    """The keys of every partition of the queue `keys` names, by its recorded count."""
    n = int(client.get(f"{keys.key_prefix}{keys.name}:partitions") or 1)
    return [QueueKeys.partition(keys.key_prefix, keys.name, p, n) for p in range(n)]


def _records(client: redis.Redis, keys: QueueKeys) -> dict[str, dict[str, str]]:
    names = list(client.scan_iter(match=f"{keys.job_prefix}*", count=1000))
    records: dict[str, dict[str, str]] = {}
    for start in range(0, len(names), 1000):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + 1000]:
            pipe.hgetall(name)
        for name, record in zip(names[start : start + 1000], pipe.execute()):
            if record:
                records[name[len(keys.job_prefix) :]] = record
    return records


def _url(client: redis.Redis) -> str:
    """The URL `client` reads from; for a `redis.RedisCluster` client (whose partitions may
    be on any node), a primary of the cluster's current map."""
    if isinstance(client, redis.RedisCluster):
        node = client.get_primaries()[0]
        return f"redis://{node.host}:{node.port}/0"
    return "redis://{host}:{port}/{db}".format(**client.connection_pool.connection_kwargs)


def _metrics(url: str, keys: QueueKeys) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        queue = RedisJobQueue(url, keys.key_prefix, name=keys.name)
        async with JobService(queue=queue) as svc:
            return await svc.get_metrics()

    return anyio.run(read)


def _ledger_map(ledger: redis.Redis, name: str) -> dict[str, int]:
    return {k: int(v) for k, v in ledger.hgetall(name).items()}


class _Checker:
    def __init__(self, client: redis.Redis, ledger: redis.Redis, keys: QueueKeys) -> None:
        self.client, self.keys = client, keys
        self.parts = partitions(client, keys)
        n = len(self.parts)
        self.problems: list[str] = []
        self.records: dict[str, dict[str, str]] = {}
        self.runs = _ledger_map(ledger, "runs")
        self.top_attempt = _ledger_map(ledger, "attempt")
        self.entries: dict[str, list[tuple[int, str]]] = {}
        self.delayed: dict[str, float] = {}
        self.dead: list[Any] = []
        for p, part in enumerate(self.parts):
            found = _records(client, part)
            for job_id in found:
                if partition_of(job_id, n) != p:
                    self.fail(f"{job_id}: record in partition {p}, not its own")
            self.records.update(found)
            for index, stream in enumerate(part.streams):
                for entry, fields in client.xrange(stream):
                    job_id = fields.get("id", "")
                    if job_id and partition_of(job_id, n) != p:
                        self.fail(f"{job_id}: stream entry in partition {p}, not its own")
                    self.entries.setdefault(job_id, []).append((index, entry))
            delayed = dict(client.zrange(part.delayed, 0, -1, withscores=True))
            for job_id in delayed:
                if partition_of(job_id, n) != p:
                    self.fail(f"{job_id}: delayed in partition {p}, not its own")
            self.delayed.update(delayed)
            self.dead += client.xrange(part.dead)
        self.dead_ids = Counter(f.get("id", "") for _, f in self.dead)
        sec, usec = client.time()
        self.now_ms = sec * 1000 + usec // 1000

    def fail(self, message: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(message)

    def placement(self, job_id: str, record: dict[str, str]) -> None:
        """One job in exactly one place, the place its status says."""
        status = record.get("status", "")
        entries = self.entries.get(job_id, [])
        in_delayed, in_dead = job_id in self.delayed, self.dead_ids.get(job_id, 0)
        if status in ("PENDING", "RUNNING"):
            want = (PRIORITY_STREAM.get(record.get("priority", "10"), 2), record.get("entry"))
            if entries != [want]:
                self.fail(f"{job_id} {status}: stream entries {entries}, expected [{want}]")
        elif entries:
            self.fail(f"{job_id} {status}: still has stream entries {entries}")
        if (status in ("SCHEDULED", "RETRYING")) != in_delayed:
            self.fail(f"{job_id} {status}: in the delayed set = {in_delayed}")
        if (status == "DEAD_LETTER") != (in_dead == 1):
            self.fail(f"{job_id} {status}: {in_dead} dead-letter entries")
        if status not in TERMINAL | QUEUED | {"RUNNING"}:
            self.fail(f"{job_id}: unknown status {status!r}")

    def side_effects(self, job_id: str, record: dict[str, str]) -> None:
        """Ran at least once when completed; never an attempt the record does not know;
        nothing started after the attempt that completed it."""
        attempts, runs = int(record.get("attempts") or 0), self.runs.get(job_id, 0)
        top = self.top_attempt.get(job_id, 0)
        if top > attempts:
            self.fail(f"{job_id}: a run had attempt {top} but the record counts {attempts}")
        if runs > attempts:
            self.fail(f"{job_id}: {runs} handler runs for {attempts} attempts")
        if record.get("status") == "COMPLETED":
            done = orjson.loads(record.get("result") or "null")
            if runs < 1:
                self.fail(f"{job_id}: COMPLETED but its handler never ran")
            if isinstance(done, dict) and done.get("attempt") != attempts:
                self.fail(f"{job_id}: completed by attempt {done.get('attempt')}, "
                          f"yet {attempts} attempts started")  # fmt: skip

    def pending_lists(self, lease: float) -> None:
        """Every delivered, unacknowledged entry is a live lease of a RUNNING job."""
        for p, part in enumerate(self.parts):
            self._pending_list(p, part, lease)

    def _pending_list(self, p: int, part: QueueKeys, lease: float) -> None:
        fresh = self.now_ms - 3000  # heartbeat 0.5 s: three missed beats
        live = set(self.client.zrangebyscore(part.workers, fresh, "+inf"))
        for index, stream in enumerate(part.streams):
            try:
                pending = self.client.xpending_range(stream, "workers", "-", "+", 10_000)
            except redis.ResponseError:
                continue  # no group (nothing ever ran)
            for p in pending:
                entry, owner, idle = p["message_id"], p["consumer"], p["time_since_delivered"]
                if idle > lease * 2000 or owner not in live:
                    self.fail(f"{stream} {entry}: pending for {owner} (live={owner in live}), "
                              f"idle {idle} ms with a {lease:g} s lease")  # fmt: skip
                n = len(self.parts)
                ids = [
                    i for i, es in self.entries.items()
                    if (index, entry) in es and partition_of(i, n) == p
                ]  # fmt: skip
                record = self.records.get(ids[0], {}) if ids else {}
                if record.get("status") != "RUNNING" or record.get("owner") != owner:
                    self.fail(f"{stream} {entry}: pending for {owner}, record {record}")

    def delayed_future(self, slack: float) -> None:
        for job_id, due in self.delayed.items():
            if due < self.now_ms - slack * 1000:
                self.fail(f"delayed {job_id} was due {self.now_ms - due:.0f} ms ago")
            if self.records.get(job_id, {}).get("status") not in ("SCHEDULED", "RETRYING"):
                self.fail(f"delayed {job_id} has record {self.records.get(job_id)}")


def _metric_problems(
    metrics: dict[str, Any], statuses: Counter[str], expired: int, foreign: int, dead: int
) -> list[str]:
    q = metrics["queue"]
    want = {
        "pending": statuses["PENDING"], "running": statuses["RUNNING"],
        "scheduled": statuses["SCHEDULED"], "retrying": statuses["RETRYING"],
        "completed": statuses["COMPLETED"] + expired, "failed": statuses["FAILED"],
        "cancelled": statuses["CANCELLED"], "dead_letter": dead,
        "dead_lettered": statuses["DEAD_LETTER"] + foreign,
    }  # fmt: skip
    return [f"metrics {k} = {q[k]}, records say {v}" for k, v in want.items() if q[k] != v]


def check_invariants(
    client: redis.Redis,
    ledger: redis.Redis,
    keys: QueueKeys,
    submitted: Iterable[str],
    *,
    lease: float,
    expired_ok: bool = False,
    allow_running: bool = False,
    promote_slack: float = 2.0,
) -> Report:
    """Check the invariant on a queue (see the module docstring); raise AssertionError listing
    every violation. `expired_ok`: records of finished jobs may have expired (their results'
    TTL passed); they count as completed once the ledger shows they ran."""
    c = _Checker(client, ledger, keys)
    expired = 0
    for job_id in submitted:
        record = c.records.get(job_id)
        if record is None:
            if expired_ok and c.runs.get(job_id, 0) >= 1:
                expired += 1
            else:
                c.fail(f"{job_id}: submitted, but no record (lost)")
        elif record.get("status") == "RUNNING" and not allow_running:
            c.fail(f"{job_id}: still RUNNING ({record.get('owner')})")
    for job_id, record in c.records.items():
        c.placement(job_id, record)
        c.side_effects(job_id, record)
    c.pending_lists(lease)
    c.delayed_future(promote_slack)
    statuses = Counter(r.get("status", "") for r in c.records.values())
    foreign = [f for _, f in c.dead if not f.get("id")]
    url = _url(client)
    metrics = _metrics(url, keys)
    problems = c.problems + _metric_problems(metrics, statuses, expired, len(foreign),
                                             len(c.dead))  # fmt: skip
    assert not problems, "invariant violated:\n  " + "\n  ".join(problems)
    return Report(c.records, statuses, c.runs, metrics, foreign, problems)
