"""Fixtures of the fault suite: a queue Redis and a ledger Redis of the test's own, worker
processes (ended by PID), and the driver and event loop (`combo`) every scenario runs on.

Each scenario runs on every combo (`resp-asyncio`, `redis-py-asyncio`, `coredis-asyncio`,
`coredis-trio`) under `make faults`; the default run keeps the other three combos for the
scenarios marked `every_driver` and runs the rest on resp alone. `slow` variants run only when
`-m` selects them.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests._redis import RedisProcess
from tests.faults._harness import COMBOS, RESP, Combo, Workers


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "every_driver: runs on every driver in the default run, not only in make faults"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `combo` over COMBOS; all but resp are `slow` unless the test is marked
    `every_driver`."""
    if "combo" not in metafunc.fixturenames:
        return
    everywhere = metafunc.definition.get_closest_marker("every_driver") is not None
    slow = () if everywhere else (pytest.mark.slow,)
    params = [pytest.param(c, id=c.id, marks=() if c == RESP else slow) for c in COMBOS]
    metafunc.parametrize("combo", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("markexpr", ""):
        return
    skip = pytest.mark.skip(reason="slow variant: run with -m slow (make faults)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def anyio_backend(combo: Combo) -> Iterator[str]:
    """An async scenario runs on its combo's event loop (coredis leftovers collected after,
    as in tests/conftest.py)."""
    yield combo.backend
    if combo.driver == "coredis":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


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
def workers(ledger: redis.Redis, tmp_path: Path, combo: Combo) -> Iterator[Workers]:
    kwargs = ledger.connection_pool.connection_kwargs
    pool = Workers(f"redis://127.0.0.1:{kwargs['port']}/0", tmp_path, combo)
    try:
        yield pool
    finally:
        pool.close()
