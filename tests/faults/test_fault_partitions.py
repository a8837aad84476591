"""A partitioned queue under a worker killed mid-job: its jobs, in every partition, are taken
back after the lease and all complete once; and the invariant check covers every partition."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
import redis

from streamjobs._keys import QueueKeys, partition_of
from streamjobs.sync import SyncJobClient
from tests._redis import RedisProcess
from tests.faults._harness import KEYS, LEASE, QUEUE, Workers, wait_until, work
from tests.faults._invariants import check_invariants, partitions

PARTITIONS = 4


def submit(url: str, n: int, seconds: float = 0.0) -> list[str]:
    """Submit `n` work jobs to the suite's queue split in PARTITIONS partitions."""
    with SyncJobClient(url, name=QUEUE, partitions=PARTITIONS) as client:
        return client.submit_many(work(n, seconds=seconds))


def held_by(client: redis.Redis, consumer: str) -> dict[str, tuple[int, str]]:
    """Job id -> (partition, entry) for the entries `consumer` holds, in every partition."""
    held = {}
    for p, part in enumerate(partitions(client, KEYS)):
        for stream in part.streams:
            pending = client.xpending_range(stream, "workers", "-", "+", 1000, consumer)
            for e in pending:
                entry = client.xrange(stream, e["message_id"], e["message_id"])
                if entry:
                    held[entry[0][1]["id"]] = (p, e["message_id"])
    return held


def pool_of(pid: int, client: redis.Redis) -> str | None:
    """The pool id of worker process `pid`, from partition 0's registry."""
    for pool in client.zrange(partitions(client, KEYS)[0].workers, 0, -1):
        if f"-{pid}-" in pool:
            return str(pool)
    return None


def completed(client: redis.Redis, ids: list[str]) -> int:
    parts = partitions(client, KEYS)
    n = len(parts)
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(parts[partition_of(job_id, n)].job(job_id), "status")
    return sum(1 for s in pipe.execute() if s == "COMPLETED")


def test_jobs_of_a_worker_killed_mid_job_are_taken_back_in_every_partition(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    ids = submit(server.url, 800, seconds=0.01)
    extra = ["--partitions", str(PARTITIONS)]
    killed = workers.start(server.url, concurrency=20, extra=extra)
    survivor = workers.start(server.url, concurrency=20, extra=extra)
    wait_until(lambda: completed(client, ids) >= 100, 60, "100 jobs to complete")
    consumer = wait_until(lambda: pool_of(killed.pid, client), 10, "the pool to register")
    wait_until(lambda: held_by(client, consumer), 10, "the doomed worker to hold jobs")

    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(10)
    orphans = held_by(client, consumer)
    assert orphans, "the killed worker held no job: the kill proved nothing"

    wait_until(lambda: completed(client, ids) == len(ids), 90, "every job to complete")
    report = check_invariants(client, ledger, KEYS, ids, lease=LEASE)
    assert report.statuses["COMPLETED"] == len(ids)
    assert len({p for p, _ in orphans.values()}) > 1, orphans  # more than one partition
    for job_id in orphans:
        assert report.records[job_id]["owner"] != consumer, f"{job_id} was never taken back"
    assert workers.terminate(survivor) == 0


def misplace_a_record(client: redis.Redis, parts: list[QueueKeys]) -> None:
    """Copy job j0's record into a partition that is not its own."""
    [own] = [part for part in parts if client.exists(part.job("j0"))]
    other = parts[(parts.index(own) + 1) % len(parts)]
    client.hset(other.job("j0"), mapping=client.hgetall(own.job("j0")))


def lose_an_entry(client: redis.Redis, parts: list[QueueKeys]) -> None:
    """Trim the stream that holds j0's entry, in whichever partition it is."""
    for part in parts:
        for stream in part.streams:
            if any(f.get("id") == "j0" for _, f in client.xrange(stream)):
                client.xtrim(stream, maxlen=0)


@pytest.mark.parametrize(
    ("corrupt", "complaint"),
    [(misplace_a_record, "not its own"), (lose_an_entry, "stream entries")],
)
def test_the_invariant_check_looks_at_every_partition(
    corrupt: Callable[[redis.Redis, list[QueueKeys]], None],
    complaint: str,
    server: RedisProcess,
    ledger: redis.Redis,
) -> None:
    client = server.client()
    ids = submit(server.url, 8)
    parts = partitions(client, KEYS)
    assert len(parts) == PARTITIONS
    check_invariants(client, ledger, KEYS, ids, lease=LEASE)  # sound before
    corrupt(client, parts)
    with pytest.raises(AssertionError, match=complaint):
        check_invariants(client, ledger, KEYS, ids, lease=LEASE)
