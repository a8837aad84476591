"""An evicting Redis (any maxmemory-policy but noeviction) can drop a queued job without a trace:
connecting says so on the `streamjobs` logger, the worker CLI prints it, and `streamjobs info`
shows the policy."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamjobs import JobService, RedisJobQueue
from tests import _combos
from tests._redis import RedisProcess

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def lru(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server that evicts the least recently used keys once full."""
    server = RedisProcess(tmp_path / "lru", "--maxmemory-policy", "allkeys-lru").start()
    try:
        yield server
    finally:
        server.kill()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "streamjobs" and r.levelno == logging.WARNING]  # fmt: skip


async def test_initialize_warns_when_redis_may_evict_jobs(
    combo: tuple[str, str], lru: RedisProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streamjobs")
    svc = JobService(queue=RedisJobQueue(lru.url, name=queue_name, driver=combo[1]))
    await svc.initialize()
    try:
        [message] = _warnings(caplog)
        assert "maxmemory-policy" in message and "allkeys-lru" in message
        assert svc.queue.maxmemory_policy == "allkeys-lru"
    finally:
        await svc.close()


async def test_noeviction_gives_no_warning(
    combo: tuple[str, str], redis_process: RedisProcess, queue_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="streamjobs")
    queue = RedisJobQueue(redis_process.url, name=queue_name, driver=combo[1])
    async with JobService(queue=queue) as svc:
        assert svc.queue.maxmemory_policy == "noeviction"
    assert _warnings(caplog) == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_refused_config_get_falls_back_to_info(
    anyio_backend: str, lru: RedisProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Managed Redis often refuses CONFIG: INFO memory tells the policy instead."""
    caplog.set_level(logging.DEBUG, logger="streamjobs")
    lru.client().acl_setuser(
        "app", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"]
    )
    url = f"redis://app:pw@127.0.0.1:{lru.port}/0"
    async with JobService(queue=RedisJobQueue(url, name=queue_name)) as svc:
        assert svc.queue.maxmemory_policy == "allkeys-lru"
    [message] = _warnings(caplog)
    assert "allkeys-lru" in message


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_redis_that_tells_no_policy_is_still_used(
    anyio_backend: str, lru: RedisProcess, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither CONFIG nor INFO memory allowed: said at DEBUG, and the service still works."""
    caplog.set_level(logging.DEBUG, logger="streamjobs")
    lru.client().acl_setuser(
        "app", enabled=True, passwords=["+pw"], keys=["*"],
        commands=["+@all", "-config", "-info", "+info|server"],
    )  # fmt: skip
    url = f"redis://app:pw@127.0.0.1:{lru.port}/0"
    async with JobService(queue=RedisJobQueue(url, name=queue_name)) as svc:
        assert svc.queue.maxmemory_policy is None
        assert await svc.get_job_status("none") is None
    assert _warnings(caplog) == []
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("maxmemory-policy" in line for line in debug)


def _cli(url: str, queue: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "streamjobs", *args, "--queue", queue]
    env = {**os.environ, "REDIS_URL": url}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    return done


def test_the_worker_cli_warns_when_redis_may_evict_jobs(lru: RedisProcess, queue_name: str) -> None:
    done = _cli(lru.url, queue_name, "worker", "examples.app:service", "--burst")
    warning = [line for line in done.stderr.splitlines() if "maxmemory-policy" in line]
    assert warning and "WARNING" in warning[0] and "allkeys-lru" in warning[0], done.stderr


def test_info_shows_the_maxmemory_policy(lru: RedisProcess, queue_name: str) -> None:
    assert json.loads(_cli(lru.url, queue_name, "info", "--json").stdout)["maxmemory_policy"] == (
        "allkeys-lru"
    )
    assert "allkeys-lru" in _cli(lru.url, queue_name, "info").stdout
