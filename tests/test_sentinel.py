"""A queue behind Redis Sentinel (`redis+sentinel://`), and `wait_replicas`: jobs run through
the sentinels on every driver and loop, the sync client and the CLI; a failover under load
loses no job that a submit acknowledged and the workers follow the new primary; WAIT falls
short with a clear ReplicationError when no replica answers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from streamjobs import (
    AsyncWorkerPool,
    ConfigurationError,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
    ReplicationError,
    StreamJobsError,
)
from streamjobs._keys import QueueKeys
from streamjobs._server_binary import redis_binary
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests._redis import RedisProcess, free_port
from tests.conftest import FAST

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "jobs"
#: Replicas resync at once (Redis 7 waits 5 s before a diskless sync by default).
FAST_SYNC = ("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")


class Sentinel:
    """One redis-server in sentinel mode watching SERVICE, ended by PID."""

    def __init__(self, directory: Path, primary_port: int, quorum: int) -> None:
        self.dir, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\nlogfile sentinel.log\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 5\n"
        )
        self.proc = subprocess.Popen(
            [redis_binary().path, str(directory / "sentinel.conf"), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)

    def primary_port(self) -> int | None:
        with self.client() as client:
            found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(found[1]) if found else None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Topology:
    """A primary, its replicas and the sentinels watching them, on loopback."""

    primary: RedisProcess
    replicas: list[RedisProcess]
    sentinels: list[Sentinel]
    nodes: dict[int, RedisProcess] = field(default_factory=dict)

    def url(self, tail: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}{tail}"

    def current(self) -> RedisProcess:
        """The node the sentinels name as primary now."""
        port = self.sentinels[0].primary_port()
        assert port is not None
        return self.nodes[port]

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.kill()
        for node in self.nodes.values():
            node.kill()


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _synced(replica: RedisProcess, primary_port: int) -> bool:
    with replica.client() as client:
        info = client.info("replication")
    return info.get("master_port") == primary_port and info.get("master_link_status") == "up"


def start_topology(base: Path, replicas: int, sentinels: int) -> Topology:
    """Primary, `replicas` replicas in sync, and `sentinels` sentinels (quorum: a majority)
    that see every replica; closed by the caller."""
    primary = RedisProcess(base / "primary", *FAST_SYNC)
    topology = Topology(primary, [], [])
    try:
        primary.start()
        topology.nodes[primary.port] = primary
        for n in range(replicas):
            args = (*FAST_SYNC, "--replicaof", "127.0.0.1", str(primary.port))
            replica = RedisProcess(base / f"replica{n}", *args).start()
            topology.replicas.append(replica)
            topology.nodes[replica.port] = replica
        for replica in topology.replicas:
            _wait(lambda r=replica: _synced(r, primary.port), 15, "a replica in sync")
        quorum = sentinels // 2 + 1
        for n in range(sentinels):
            topology.sentinels.append(Sentinel(base / f"sentinel{n}", primary.port, quorum))

        def seen() -> bool:
            for s in topology.sentinels:
                with s.client() as client:
                    known = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                    others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
                if len(known) < replicas or len(others) < sentinels - 1:
                    return False
            return True

        _wait(seen, 20, "the sentinels to see every replica and each other")
    except BaseException:
        topology.close()
        raise
    return topology


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """A primary, one replica and three sentinels, shared by the tests that fail nothing."""
    topology = start_topology(tmp_path_factory.mktemp("sentinel"), replicas=1, sentinels=3)
    try:
        yield topology
    finally:
        topology.close()


async def square(job: JobDefinition, progress: Any) -> int:
    return int(job.args[0]) ** 2


# -- (1) jobs through the sentinels -----------------------------------------------------------


@pytest.mark.anyio
async def test_jobs_run_through_a_sentinel_url_on_every_driver_and_loop(
    combo: tuple[str, str], cluster: Topology, queue_name: str
) -> None:
    driver = None if combo[1] == "resp" else combo[1]  # resp alone does not follow sentinels
    queue = RedisJobQueue(cluster.url(), name=queue_name, driver=driver)
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    service.register_handler("square", square)
    with anyio.fail_after(30):
        async with service:
            await service.start_workers(2)
            ids = [await service.submit_job("square", [n]) for n in range(5)]
            results = [await service.wait_for_result(i, timeout=10) for i in ids]
    assert [(r.status, r.result) for r in results] == [(JobStatus.COMPLETED, n * n) for n in range(5)]
    with cluster.current().client() as client:  # the jobs live on the primary the sentinels name
        assert client.hget(QueueKeys(name=queue_name).job(ids[0]), "status") == "COMPLETED"


def test_the_resp_driver_refuses_a_sentinel_url_naming_the_drivers_that_serve_it(
    cluster: Topology, queue_name: str
) -> None:
    queue = RedisJobQueue(cluster.url(), name=queue_name, driver="resp")
    with pytest.raises(ConfigurationError, match=r"redis-py.*coredis"):
        anyio.run(queue.connect)


def test_the_sync_client_submits_and_reads_through_a_sentinel_url(
    cluster: Topology, queue_name: str
) -> None:
    with SyncJobClient(cluster.url(), name=queue_name, wait_replicas=1) as jobs:
        job_id = jobs.submit_job("square", args=(3,))
        assert jobs.get_job_status(job_id) is JobStatus.PENDING
        assert jobs.cancel_job(job_id)
    replica = cluster.replicas[0] if cluster.current() is cluster.primary else cluster.primary
    with replica.client() as client:  # WAIT returned: the replica holds the change already
        assert client.hget(QueueKeys(name=queue_name).job(job_id), "status") == "CANCELLED"
