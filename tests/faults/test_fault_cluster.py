"""Faults on a Redis Cluster (3 primaries, a replica each), worker processes and submitters
given the URL of a node that neither serves the queue nor replicates it: a worker killed
mid-job has its jobs taken back; a failover, by `CLUSTER FAILOVER` on the replica or by the
primary's death (SIGKILL), is ridden through, and every job acknowledged completes.

Each runs on asyncio (`--driver resp`: a cluster is served by redis-py's cluster client) and
on trio (coredis' cluster client). The queue's keys live in one slot, so one node holds them
all: the invariant is checked through a plain client of whichever node serves that slot."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from tests._cluster import RedisCluster
from tests._redis import RedisProcess
from tests.faults._harness import (
    KEYS,
    LEASE,
    RESP,
    Combo,
    Workers,
    all_terminal,
    pool_of,
    statuses,
    submit,
    wait_until,
    work,
)
from tests.faults._invariants import check_invariants

VIAS = (RESP, Combo("coredis", "trio"))


@pytest.fixture(params=VIAS, ids=[v.id for v in VIAS])
def via(request: pytest.FixtureRequest) -> Combo:
    """The driver and event loop of the scenario's workers and submitters."""
    return request.param  # type: ignore[no-any-return]


def ledger_url(ledger: redis.Redis) -> str:
    return f"redis://127.0.0.1:{ledger.connection_pool.connection_kwargs['port']}/0"


def bystander(cluster: RedisCluster, *busy: RedisProcess) -> RedisProcess:
    """A live node other than `busy`: the URL clients start from."""
    return next(n for n in cluster.live() if n not in busy)


def held(client: redis.Redis, consumer: str) -> list[str]:
    """The job ids whose entries `consumer` holds, delivered and not acknowledged."""
    ids = []
    for stream in KEYS.streams:
        for p in client.xpending_range(stream, "workers", "-", "+", 1000, consumername=consumer):
            entry = client.xrange(stream, p["message_id"], p["message_id"])
            ids += [entry[0][1]["id"]] if entry else []
    return ids


def test_a_worker_killed_mid_job_on_a_cluster_has_its_jobs_taken_back_and_completed(
    faulty_cluster: RedisCluster, ledger: redis.Redis, tmp_path: Path, via: Combo
) -> None:
    owner = faulty_cluster.primary_of(KEYS.streams[0])
    url = bystander(faulty_cluster, owner).url
    client = owner.client()
    workers = Workers(ledger_url(ledger), tmp_path, via)
    try:
        ids = submit(url, work(400, seconds=0.05), via=via)
        killed = workers.start(url, concurrency=10)
        survivor = workers.start(url, concurrency=10)
        consumer = wait_until(lambda: pool_of(killed.pid, client), 15, "the pool to register")
        wait_until(lambda: held(client, consumer), 15, "the doomed worker to hold jobs")
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        orphans = held(client, consumer)
        assert orphans, "the killed worker held no job: the kill proved nothing"

        wait_until(lambda: all_terminal(client, ids), 60, "every job to end")
        report = check_invariants(client, ledger, KEYS, ids, lease=LEASE)
        assert report.statuses["COMPLETED"] == len(ids)
        for job_id in orphans:
            assert report.records[job_id]["owner"] != consumer, f"{job_id} was never taken back"
        assert workers.terminate(survivor) == 0
    finally:
        workers.close()
        client.close()


@pytest.mark.parametrize("how", ["cluster-failover", "primary-killed"])
def test_workers_and_submitters_ride_through_a_failover_and_every_job_completes(
    faulty_cluster: RedisCluster, ledger: redis.Redis, tmp_path: Path, via: Combo, how: str
) -> None:
    owner = faulty_cluster.primary_of(KEYS.streams[0])
    replica = faulty_cluster.replica_of(owner)
    url = bystander(faulty_cluster, owner, replica).url
    workers = Workers(ledger_url(ledger), tmp_path, via)
    late: list[str] = []
    try:
        procs = [workers.start(url, concurrency=10) for _ in range(2)]
        ids = submit(url, work(200, seconds=0.01, prefix="before"), via=via)
        with owner.client() as client:
            wait_until(lambda: all(pool_of(p.pid, client) for p in procs), 20, "pools to start")
            wait_until(lambda: "COMPLETED" in statuses(client, ids[:20]), 20, "jobs to run")

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
        print(f"\n{how} on {via.id}: the cluster was ok again {took:.2f}s after the fault")
        submitter.join(60)
        assert not submitter.is_alive(), "the submitter never finished"
        assert len(late) == 400

        ids += late
        with replica.client() as client:
            wait_until(lambda: all_terminal(client, ids), 60, "every job to end")
            report = check_invariants(client, ledger, KEYS, ids, lease=LEASE)
            noscript = client.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0)
        assert report.statuses["COMPLETED"] == len(ids)
        assert noscript > 0, "the promoted replica knew every script: NOSCRIPT went untested"
        print(f"{how} on {via.id}: NOSCRIPT answered {noscript} times by the new primary")
        done = sorted(int(r["finished_at"]) for r in report.records.values())
        stall = max(b - a for a, b in itertools.pairwise(done)) / 1000
        print(f"{how} on {via.id}: longest pause between two completions {stall:.2f}s")
        for proc in procs:  # a clean stop: no worker was left broken by the failover
            assert workers.terminate(proc) == 0, workers.log(proc)[-3000:]
    finally:
        workers.close()
