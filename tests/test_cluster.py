"""A queue on a Redis Cluster, given the URL of any one node: detected at connect, served by
a cluster client (redis-py's under asyncio, coredis' under trio), MOVED followed; jobs run
exactly once, the sync client and the CLI read the queue; a worker killed mid-job has its job
taken over; a failover, by `CLUSTER FAILOVER` or by the primary's death, is ridden through.

Every cluster here is 3 primaries (and for the failovers, a replica each) on loopback."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis import exceptions as rex

from streamjobs import (
    AsyncWorkerPool,
    CancelOutcome,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
)
from streamjobs._drivers._errors import lost_replies
from streamjobs._drivers._pipeline import ReplyLost
from streamjobs._keys import QueueKeys, key_slot, partition_of
from streamjobs.errors import ConfigurationError, RedisNotReadyError, RedisUnavailableError
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests._cluster import ClusterUnavailable, RedisCluster
from tests.conftest import FAST, start_cluster
from tests.test_urls import make_ca, server_cert

#: Each loop with the drivers it gives a cluster: redis-py's cluster client on asyncio (the
#: default, whatever driver is named but coredis), coredis' on asyncio when named, and on trio.
CLUSTER_COMBOS = [("asyncio", None), ("asyncio", "coredis"), ("trio", "coredis")]


@pytest.fixture(params=CLUSTER_COMBOS, ids=["asyncio-default", "asyncio-coredis", "trio-coredis"])
def combo(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(event loop, driver name) for this run of the test."""
    return tuple(request.param)  # type: ignore[return-value]


@pytest.fixture
def anyio_backend(combo: tuple[str, str | None]) -> Iterator[str]:
    """The combo's event loop (coredis' unstarted connections collected after, as in
    tests/_combos.py)."""
    yield combo[0]
    if combo[1] == "coredis":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
PRIORITIES = ("critical", "high", "normal", "low")


def url_away_from(cluster: RedisCluster, name: str) -> str:
    """The URL of a primary that does not serve the queue `name`: every first call meets
    MOVED."""
    owner = cluster.primary_of(QueueKeys(name=name).streams[0])
    return cluster.other_than(owner).url


class Handlers:
    """Handlers that count their runs: `ok` returns its argument, `flaky` fails its first
    attempt, `doomed` always fails."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    def register(self, service: JobService) -> None:
        service.register_handler("ok", self.ok)
        service.register_handler("flaky", self.flaky)
        service.register_handler("doomed", self.doomed)
        service.register_handler("nap", self.nap)

    async def ok(self, job: JobDefinition, progress: Any) -> Any:
        self.runs[job.id] += 1
        return job.args[0]

    async def flaky(self, job: JobDefinition, progress: Any) -> str:
        self.runs[job.id] += 1
        if job.attempts < 2:
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    async def nap(self, job: JobDefinition, progress: Any) -> Any:
        self.runs[job.id] += 1
        await anyio.sleep(0.01)
        return job.args[0]

    async def doomed(self, job: JobDefinition, progress: Any) -> None:
        self.runs[job.id] += 1
        raise RuntimeError("always fails")


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-primary cluster whose nodes speak TLS only, to clients and to each other."""
    certs = tmp_path_factory.mktemp("certs")
    ca = make_ca(certs, "ca")
    cert, key = server_cert(certs)
    cluster = RedisCluster(tmp_path_factory.mktemp("tls-cluster"), tls=(cert, key, ca))
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        cluster.stop()
        pytest.skip(f"no TLS Redis Cluster here: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def cli_info(url: str, name: str) -> dict[str, Any]:
    """`streamjobs info --json` on the queue, as a user runs it."""
    cmd = [sys.executable, "-m", "streamjobs", "info", "--json", "--redis-url", url,
           "--queue", name]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


async def test_a_queue_on_any_node_of_a_cluster_runs_every_job_once(
    redis_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    url = url_away_from(redis_cluster, queue_name)
    queue = RedisJobQueue(url, name=queue_name, driver=combo[1])
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    handlers = Handlers()
    handlers.register(service)
    async with service:
        assert queue.topology == "Redis Cluster (3 primaries)"
        await service.start_workers(4)
        specs = [{"handler": "ok", "args": [n], "priority": PRIORITIES[n % 4]} for n in range(40)]
        ids = await service.submit_many(specs)
        flaky = await service.submit_job("flaky", max_retries=2, retry_delay=0.05)
        doomed = await service.submit_job("doomed", max_retries=1, retry_delay=0.05)
        with anyio.fail_after(30):
            results = [await service.wait_for_result(job_id) for job_id in ids]
            retried = await service.wait_for_result(flaky)
            dead = await service.wait_for_result(doomed)
        await service.stop_workers()
        dead_letters = await service.get_dead_letters()
    assert [r.result for r in results] == list(range(40))
    assert all(handlers.runs[job_id] == 1 for job_id in ids)
    assert (retried.status, retried.attempts, handlers.runs[flaky]) == (JobStatus.COMPLETED, 2, 2)
    assert (dead.status, handlers.runs[doomed]) == (JobStatus.DEAD_LETTER, 2)
    assert [job.id for job in dead_letters] == [doomed]

    with SyncJobClient(url, name=queue_name) as client:  # the sync client finds the cluster
        assert client.get_job_status(ids[0]) == JobStatus.COMPLETED
        assert [job.id for job in client.get_dead_letters()] == [doomed]
        late = client.submit_job("ok", [99], priority="high")
        assert client.get_job_status(late) == JobStatus.PENDING
    info = cli_info(url, queue_name)
    assert info["topology"] == "Redis Cluster (3 primaries)"
    assert (info["dead_letters"], info["pending"]["high"]) == (1, 1)
    assert info["totals"]["completed"] == 41


@pytest.mark.parametrize(
    ("anyio_backend", "driver"), _combos.COMBOS, ids=[f"{a}-{d}" for a, d in _combos.COMBOS]
)
async def test_any_driver_named_serves_a_cluster_through_a_cluster_client(
    redis_cluster: RedisCluster, queue_name: str, driver: str
) -> None:
    url = url_away_from(redis_cluster, queue_name)
    async with JobService(queue=RedisJobQueue(url, name=queue_name, driver=driver)) as svc:
        job_id = await svc.submit_job("ok", [1])
        assert await svc.get_job_status(job_id) == JobStatus.PENDING
        assert svc.queue.topology == "Redis Cluster (3 primaries)"
        expected = "coredis cluster" if driver == "coredis" else "redis-py cluster"
        assert getattr(svc.queue.driver, "name", None) == expected


async def test_on_a_cluster_a_long_job_keeps_its_lease_and_a_running_job_can_be_cancelled(
    redis_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    """Lease renewal (a thread on the sync driver) and the canceller (a blocking pop) both
    find the cluster: a job three leases long runs once, a cancelled one stops at once."""
    url = url_away_from(redis_cluster, queue_name)
    queue = RedisJobQueue(url, name=queue_name, driver=combo[1])
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    runs: Counter[str] = Counter()
    running, stopped = anyio.Event(), anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> str:
        runs[job.id] += 1
        await anyio.sleep(float(job.args[0]))
        return "done"

    async def endless(job: JobDefinition, progress: Any) -> None:
        running.set()
        try:
            await anyio.sleep(60)
        finally:
            stopped.set()

    service.register_handler("slow", slow)
    service.register_handler("endless", endless)
    async with service:
        await service.start_workers(2)
        long_job = await service.submit_job("slow", [FAST.lease * 3])
        doomed = await service.submit_job("endless")
        with anyio.fail_after(20):
            await running.wait()
            assert await service.cancel_job(doomed) == CancelOutcome.REQUESTED
            await stopped.wait()
            result = await service.wait_for_result(long_job)
        await service.stop_workers()
    assert (result.status, result.attempts, runs[long_job]) == (JobStatus.COMPLETED, 1, 1)
    with SyncJobClient(url, name=queue_name) as client:
        assert client.get_job_status(doomed) == JobStatus.CANCELLED
        more = client.submit_many([{"handler": "slow", "args": [0]} for _ in range(3)])
        assert [client.get_job_status(job_id) for job_id in more] == [JobStatus.PENDING] * 3


async def test_a_user_and_password_in_the_url_apply_to_every_node_of_the_cluster(
    redis_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    """The default user may read but neither write nor run scripts: only the URL's user can
    run the queue, on whichever node its calls land."""
    url = url_away_from(redis_cluster, queue_name).replace("redis://", "redis://app:s3cret@")
    for node in redis_cluster.nodes:  # ACLs are per node: each learns the user
        with node.client() as admin:
            admin.acl_setuser("app", enabled=True, passwords=["+s3cret"], keys=["*"],
                              channels=["*"], commands=["+@all"])  # fmt: skip
            admin.acl_setuser("default", enabled=True, nopass=True,
                              commands=["+@all", "-@write", "-@scripting"])  # fmt: skip
    try:
        queue = RedisJobQueue(url, name=queue_name, driver=combo[1])
        service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
        Handlers().register(service)
        async with service:
            await service.start_workers(1)
            job_id = await service.submit_job("ok", ["fine"])
            with anyio.fail_after(10):
                assert (await service.wait_for_result(job_id)).result == "fine"
        with SyncJobClient(url, name=queue_name) as client:
            assert client.get_job_status(job_id) == JobStatus.COMPLETED
    finally:
        for node in redis_cluster.nodes:
            with node.client() as admin:
                admin.acl_setuser("default", enabled=True, nopass=True, commands=["+@all"],
                                  keys=["*"], channels=["*"])  # fmt: skip


async def test_six_partitions_spread_over_the_three_primaries_and_run_every_job_once(
    redis_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    url = redis_cluster.url
    queue = RedisJobQueue(url, name=queue_name, driver=combo[1], partitions=6)
    owners = {redis_cluster.primary_of(part.streams[0]).port for part in queue.parts}
    assert len(owners) == 3, "every primary serves some of the partitions"
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    handlers = Handlers()
    handlers.register(service)
    async with service:
        await service.start_workers(4)
        specs = [{"handler": "ok", "args": [n], "priority": PRIORITIES[n % 4]} for n in range(60)]
        ids = await service.submit_many(specs)
        ids.append(await service.submit_job("ok", [60], priority="critical"))
        with anyio.fail_after(30):
            results = [await service.wait_for_result(job_id) for job_id in ids]
        await service.stop_workers()
        metrics = await service.get_metrics()
    assert {partition_of(job_id, 6) for job_id in ids} == set(range(6))
    assert [r.result for r in results] == list(range(61))
    assert all(handlers.runs[job_id] == 1 for job_id in ids)
    assert metrics["queue"]["completed"] == 61
    info = cli_info(url, queue_name)
    assert (info["topology"], info["totals"]["completed"]) == ("Redis Cluster (3 primaries)", 61)


async def test_a_rediss_url_with_its_ca_reaches_every_node_of_a_tls_cluster(
    tls_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    """The URL's TLS options (here the CA) apply to the nodes the client finds by itself."""
    url = url_away_from(tls_cluster, queue_name)
    assert url.startswith("rediss://")
    queue = RedisJobQueue(url, name=queue_name, driver=combo[1])
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    Handlers().register(service)
    async with service:
        assert queue.topology == "Redis Cluster (3 primaries)"
        await service.start_workers(1)
        job_id = await service.submit_job("ok", ["secret"])
        with anyio.fail_after(10):
            assert (await service.wait_for_result(job_id)).result == "secret"
    with SyncJobClient(url, name=queue_name) as client:
        assert client.get_job_status(job_id) == JobStatus.COMPLETED


def test_a_cluster_pipeline_call_whose_connection_failed_is_a_lost_reply_not_a_refusal() -> None:
    """redis-py puts a connection's failure in the place of each reply it could not read:
    those calls may have run, so a bulk submit must report their ids as unknown."""
    noscript = rex.NoScriptError("No matching script")
    replies = lost_replies([[1], rex.ConnectionError("reset by peer"), noscript])
    assert replies[0] == [1] and replies[2] is noscript
    assert isinstance(replies[1], ReplyLost)
    assert isinstance(replies[1].error, RedisUnavailableError)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A 3-primary cluster of the test's own, whose slots it may move."""
    cluster = start_cluster(tmp_path / "cluster", replicas=0)
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_jobs_flow_on_while_the_queues_slot_moves_to_another_primary(
    own_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    """Live resharding: keys move in batches (clients meet ASK and TRYAGAIN, scripts whose
    keys are split between the nodes are refused), then the slot's new owner answers MOVED.
    Every job completes, once."""
    keys = QueueKeys(name=queue_name)
    source = own_cluster.primary_of(keys.streams[0])
    target = own_cluster.other_than(source)
    queue = RedisJobQueue(own_cluster.url, name=queue_name, driver=combo[1])
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    handlers = Handlers()
    handlers.register(service)
    ids: list[str] = []
    async with service:
        await service.start_workers(4)
        ids += await service.submit_many([{"handler": "nap", "args": [n]} for n in range(300)])

        async def submit_meanwhile() -> None:
            for n in range(300, 400, 10):
                specs = [{"handler": "nap", "args": [m]} for m in range(n, n + 10)]
                for _ in range(100):  # a bulk submit refused mid-move is made again, whole
                    try:
                        ids.extend(await service.submit_many(specs))
                        break
                    except RedisNotReadyError:
                        await anyio.sleep(0.05)
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_meanwhile)
            moved = await anyio.to_thread.run_sync(
                own_cluster.migrate_slot, key_slot(keys.streams[0]), source, target
            )
        with anyio.fail_after(30):
            results = [await service.wait_for_result(job_id) for job_id in ids]
        await service.stop_workers()
    assert moved > 50, "too few keys moved for the move to prove anything"
    assert own_cluster.primary_of(keys.streams[0]) is target
    assert sorted(r.result for r in results) == list(range(400))
    assert all(handlers.runs[job_id] == 1 for job_id in ids)


async def test_wait_replicas_on_a_cluster_is_refused_with_a_clear_error(
    redis_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    queue = RedisJobQueue(redis_cluster.url, name=queue_name, driver=combo[1], wait_replicas=1)
    with pytest.raises(ConfigurationError, match="wait_replicas is not supported on a Redis"):
        await queue.connect()
    with pytest.raises(ConfigurationError, match="wait_replicas"):
        queue.sync_driver().hget(queue.keys.job("x"), "status")


async def test_a_job_waiting_on_another_runs_after_it_on_a_cluster_with_partitions(
    redis_cluster: RedisCluster, queue_name: str, combo: tuple[str, str | None]
) -> None:
    """A dependency is released by the script that completes it, in its own partition's
    slot: on a cluster, as on one node, the dependent runs after, once."""
    queue = RedisJobQueue(redis_cluster.url, name=queue_name, driver=combo[1], partitions=6)
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    handlers = Handlers()
    handlers.register(service)
    async with service:
        await service.start_workers(2)
        first = await service.submit_job("nap", ["first"])
        then = await service.submit_job("ok", ["then"], depends_on=[first])
        chain = await service.submit_chain([{"handler": "ok", "args": [n]} for n in range(3)])
        with anyio.fail_after(20):
            done = [await service.wait_for_result(job_id) for job_id in [first, then, *chain]]
        await service.stop_workers()
    assert [r.result for r in done] == ["first", "then", 0, 1, 2]
    assert done[1].started_at is not None and done[0].finished_at is not None
    assert done[1].started_at >= done[0].finished_at
    assert all(handlers.runs[r.job_id] == 1 for r in done)
