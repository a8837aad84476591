"""Fixtures: a real redis-server for the run, and a fresh queue (its own name) per test.

`STREAMJOBS_TEST_REDIS_URL` points the suite at an external server instead;
`STREAMJOBS_TEST_REDIS=docker` starts one with testcontainers where Docker runs.
"""

from __future__ import annotations

import gc
import importlib.util
import itertools
import os
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from streamjobs import AsyncWorkerPool, JobService, RedisJobQueue, Timings
from tests._cluster import ClusterUnavailable, RedisCluster
from tests._redis import RedisProcess

_names = itertools.count()

#: The example apps, run by tests as users would run them.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Timings that keep crash tests short: leases lapse after 1 s.
FAST = Timings(lease=1.0, reclaim_interval=0.2, heartbeat=0.5)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every integration test runs on asyncio and on trio (coredis), unless it says why not.

    coredis 6.9 leaves the two memory streams of a connection it built but never started (a
    command cancelled while it connects, as at shutdown) unclosed, and they warn when
    collected. After a trio test they are collected here, their warning ignored; our own
    streams stay checked by the same tests on asyncio, where coredis is not used."""
    yield str(request.param)
    if request.param == "trio":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def load_example(name: str) -> Any:
    """Import examples/<name>.py as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _docker_url() -> Iterator[str]:
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7") as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the Redis that integration tests use."""
    if url := os.environ.get("STREAMJOBS_TEST_REDIS_URL"):
        yield url
    elif os.environ.get("STREAMJOBS_TEST_REDIS") == "docker":
        yield from _docker_url()
    else:
        server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
        try:
            yield server.url
        finally:
            server.kill()


def start_cluster(directory: Path, replicas: int) -> RedisCluster:
    """A 3-primary Redis Cluster (`replicas` per primary); skips where this redis-server
    cannot run one."""
    cluster = RedisCluster(directory, primaries=3, replicas=replicas)
    try:
        return cluster.start()
    except ClusterUnavailable as exc:
        cluster.stop()
        pytest.skip(f"no Redis Cluster here: {exc}")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-primary Redis Cluster shared by the tests that do not fault it (each its own queue)."""
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"), replicas=0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def faulty_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A Redis Cluster of the test's own, 3 primaries each with a replica, to fail over."""
    cluster = start_cluster(tmp_path / "cluster", replicas=1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, for fault injection."""
    server = RedisProcess(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue name no other test uses: tests share a server, never keys."""
    return f"{request.node.name[:40]}-{next(_names)}"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A blocking client for looking at what landed in Redis, as redis-cli would."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def queue_keys(raw: redis.Redis, service: JobService) -> list[str]:
    """Every key the service's queue has in Redis."""
    return sorted(raw.scan_iter(match=f"{service.queue.keys.base}*", count=1000))


@pytest.fixture
async def svc(redis_url: str, queue_name: str) -> AsyncIterator[JobService]:
    """A connected service on a fresh queue, with fast leases; workers not started."""
    queue = RedisJobQueue(redis_url, name=queue_name)
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    async with service:
        yield service
