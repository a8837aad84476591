"""Fixtures of the fault suite: a queue Redis and a ledger Redis of the test's own, and worker
processes (ended by PID). `slow` variants run only when `-m` selects them (`make faults`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests._redis import RedisProcess
from tests.faults._harness import Workers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("markexpr", ""):
        return
    skip = pytest.mark.skip(reason="slow variant: run with -m slow (make faults)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def server(redis_process: RedisProcess) -> RedisProcess:
    """The queue's redis-server, ours to fault (the suite's own per-test server)."""
    return redis_process


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[redis.Redis]:
    """The ledger handlers record their runs in: a redis-server no scenario faults."""
    proc = RedisProcess(tmp_path / "ledger").start()
    client = proc.client()
    try:
        yield client
    finally:
        client.close()
        proc.kill()


@pytest.fixture
def workers(ledger: redis.Redis, tmp_path: Path) -> Iterator[Workers]:
    kwargs = ledger.connection_pool.connection_kwargs
    pool = Workers(f"redis://127.0.0.1:{kwargs['port']}/0", tmp_path)
    try:
        yield pool
    finally:
        pool.close()
