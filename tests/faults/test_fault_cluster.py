"""Faults on a Redis Cluster (3 primaries, a replica each), worker processes and submitters
given the URL of a node that neither serves the queue nor replicates it: a worker killed
mid-job has its jobs taken back; a failover, by `CLUSTER FAILOVER` on the replica or by the
primary's death (SIGKILL), is ridden through, and every job acknowledged completes.

Each runs on asyncio (`--driver resp`: a cluster is served by redis-py's cluster client) and
on trio (coredis' cluster client), with one partition (every key of the queue on one node)
and with 6 (spread over the 3 primaries). The invariant is checked through redis-py's
cluster client, which finds each partition wherever it lives."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from streamjobs import JobService, RedisJobQueue
from streamjobs._keys import QueueKeys, partition_of
from tests._cluster import RedisCluster
from tests._redis import RedisProcess
from tests.faults._harness import KEYS, LEASE, QUEUE, RESP, Combo, Workers, submit, wait_until, work
from tests.faults._invariants import TERMINAL, check_invariants

TRIO = Combo("coredis", "trio")
#: coredis leaves the memory streams of a connection it built but never started unclosed (see
#: tests/conftest.py): with a node dead, a submitter on coredis builds such connections, whose
#: warnings fire whenever the collector runs, during the test. Ignored for coredis alone.
COREDIS_LEFTOVERS = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _param(*values: Any, via: Combo, id: str) -> Any:
    marks = (COREDIS_LEFTOVERS,) if via.driver == "coredis" else ()
    return pytest.param(*values, marks=marks, id=id)


def cases(*pairs: tuple[Combo, int]) -> pytest.MarkDecorator:
    """Parametrize a scenario's `via` (driver and event loop) and `partitions`."""
    params = [_param(via, n, via=via, id=f"{via.id}-{n}-partition{'s' if n > 1 else ''}")
              for via, n in pairs]  # fmt: skip
    return pytest.mark.parametrize(("via", "partitions"), params)


def ledger_url(ledger: redis.Redis) -> str:
    return f"redis://127.0.0.1:{ledger.connection_pool.connection_kwargs['port']}/0"


def bystander(cluster: RedisCluster, *busy: RedisProcess) -> RedisProcess:
    """A live node other than `busy`: the URL clients start from."""
    return next(n for n in cluster.live() if n not in busy)


class Queue:
    """The suite's queue on a cluster, `n` partitions, read through a cluster client."""

    def __init__(self, cluster: RedisCluster, n: int) -> None:
        self.n = n
        self.parts = [QueueKeys.partition(KEYS.key_prefix, KEYS.name, p, n) for p in range(n)]
        self.client = redis.RedisCluster.from_url(cluster.url, decode_responses=True)

    def create(self, url: str, via: Combo) -> None:
        """Connect once with the partition count, which Redis records for every later
        client (worker processes and submitters take it from there)."""

        async def go() -> None:
            async with JobService(queue=RedisJobQueue(url, name=QUEUE, partitions=self.n)):
                pass

        via.run(go)

    def statuses(self, ids: list[str]) -> list[str | None]:
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.parts[partition_of(job_id, self.n)].job(job_id), "status")
        return list(pipe.execute())

    def all_terminal(self, ids: list[str]) -> bool:
        return all(s in TERMINAL for s in self.statuses(ids))

    def pool_of(self, pid: int) -> str | None:
        """The registered pool id (consumer name) of the worker process `pid`."""
        return next((p for p in self.client.zrange(self.parts[0].workers, 0, -1)
                     if f"-{pid}-" in p), None)  # fmt: skip

    def held(self, consumer: str) -> list[str]:
        """The job ids whose entries `consumer` holds, delivered and not acknowledged."""
        ids = []
        for part in self.parts:
            for stream in part.streams:
                for p in self.client.xpending_range(
                    stream, "workers", "-", "+", 1000, consumername=consumer
                ):
                    entry = self.client.xrange(stream, p["message_id"], p["message_id"])
                    ids += [entry[0][1]["id"]] if entry else []
        return ids

    def primaries(self, cluster: RedisCluster) -> set[int]:
        """The ports of the primaries serving the partitions."""
        return {cluster.primary_of(part.streams[0]).port for part in self.parts}


@pytest.fixture
def queue(faulty_cluster: RedisCluster, partitions: int) -> Iterator[Queue]:
    """The suite's queue on the test's cluster, with the scenario's partition count."""
    q = Queue(faulty_cluster, partitions)
    try:
        yield q
    finally:
        q.client.close()


@cases((RESP, 6), (TRIO, 1))
def test_a_worker_killed_mid_job_on_a_cluster_has_its_jobs_taken_back_and_completed(
    faulty_cluster: RedisCluster, queue: Queue, ledger: redis.Redis, tmp_path: Path, via: Combo
) -> None:
    owner = faulty_cluster.primary_of(queue.parts[0].streams[0])
    url = bystander(faulty_cluster, owner).url
    queue.create(url, via)
    workers = Workers(ledger_url(ledger), tmp_path, via)
    try:
        ids = submit(url, work(400, seconds=0.05), via=via)
        killed = workers.start(url, concurrency=10)
        survivor = workers.start(url, concurrency=10)
        consumer = wait_until(lambda: queue.pool_of(killed.pid), 15, "the pool to register")
        wait_until(lambda: queue.held(consumer), 15, "the doomed worker to hold jobs")
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        orphans = queue.held(consumer)
        assert orphans, "the killed worker held no job: the kill proved nothing"

        wait_until(lambda: queue.all_terminal(ids), 60, "every job to end")
        report = check_invariants(queue.client, ledger, KEYS, ids, lease=LEASE)
        assert report.statuses["COMPLETED"] == len(ids)
        for job_id in orphans:
            assert report.records[job_id]["owner"] != consumer, f"{job_id} was never taken back"
        if queue.n > 1:
            assert len(queue.primaries(faulty_cluster)) == 3, "the partitions share primaries"
        assert workers.terminate(survivor) == 0
    finally:
        workers.close()


@pytest.mark.parametrize(
    ("how", "via", "partitions"),
    [_param(how, via, n, via=via, id=f"{how}-{via.id}-{n}")
     for how, via, n in [("cluster-failover", RESP, 6), ("cluster-failover", TRIO, 1),
                         ("primary-killed", RESP, 1), ("primary-killed", TRIO, 1),
                         ("primary-killed", RESP, 6), ("primary-killed", TRIO, 6)]],
)  # fmt: skip
def test_workers_and_submitters_ride_through_a_failover_and_every_job_completes(
    faulty_cluster: RedisCluster, queue: Queue, ledger: redis.Redis, tmp_path: Path,
    via: Combo, how: str,
) -> None:  # fmt: skip
    owner = faulty_cluster.primary_of(queue.parts[0].streams[0])
    replica = faulty_cluster.replica_of(owner)
    url = bystander(faulty_cluster, owner, replica).url
    queue.create(url, via)
    workers = Workers(ledger_url(ledger), tmp_path, via)
    late: list[str] = []
    try:
        procs = [workers.start(url, concurrency=10) for _ in range(2)]
        ids = submit(url, work(200, seconds=0.01, prefix="before"), via=via)
        wait_until(lambda: all(queue.pool_of(p.pid) for p in procs), 20, "pools to start")
        wait_until(lambda: "COMPLETED" in queue.statuses(ids[:20]), 20, "jobs to run")

        def submit_through() -> None:  # batches of 20 go on throughout the failover
            specs = work(400, seconds=0.01, prefix="during")
            late.extend(submit(url, specs, via=via, batch=20, retry_for=30))

        submitter = threading.Thread(target=submit_through)
        submitter.start()
        time.sleep(0.2)
        started = time.monotonic()
        if how == "cluster-failover":
            faulty_cluster.failover(replica)
        else:
            faulty_cluster.kill(owner)
        wait_until(lambda: faulty_cluster.role(replica) == "master", 20, "the replica's promotion")
        faulty_cluster.wait_ok(20)
        took = time.monotonic() - started
        what = f"{how} on {via.id}, {queue.n} partition(s)"
        print(f"\n{what}: the cluster was ok again {took:.2f}s after the fault")
        submitter.join(60)
        assert not submitter.is_alive(), "the submitter never finished"
        assert len(late) == 400

        ids += late
        try:
            wait_until(lambda: queue.all_terminal(ids), 30, "every job to end")
        except AssertionError:
            logs = "\n".join(workers.log(proc)[-2000:] for proc in procs)
            raise AssertionError(
                f"jobs did not end: {Counter(queue.statuses(ids))}\n{logs}"
            ) from None
        report = check_invariants(queue.client, ledger, KEYS, ids, lease=LEASE)
        with replica.client() as client:
            noscript = client.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0)
        assert report.statuses["COMPLETED"] == len(ids)
        assert noscript > 0, "the promoted replica knew every script: NOSCRIPT went untested"
        print(f"{what}: NOSCRIPT answered {noscript} times by the new primary")
        done = sorted(int(r["finished_at"]) for r in report.records.values())
        stall = max(b - a for a, b in itertools.pairwise(done)) / 1000
        print(f"{what}: longest pause between two completions {stall:.2f}s")
        for proc in procs:  # a clean stop: no worker was left broken by the failover
            assert workers.terminate(proc) == 0, workers.log(proc)[-3000:]
    finally:
        workers.close()
