"""The driver seam: every driver carries the same commands to the same replies, translates
client errors the same way, survives cancellation, and is picked by event loop.

Runs our RESP driver, redis-py and coredis on asyncio, and coredis on trio (the first two
cannot run under trio; `test_redis_py_is_refused_under_trio` checks it says so).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import redis

from streamjobs._drivers import Driver, connect, running_library
from streamjobs._drivers._errors import MissingGroupError
from streamjobs._drivers.redis_sync import SyncDriver
from streamjobs._scripts import Script
from streamjobs.errors import ConfigurationError, RedisUnavailableError, StreamJobsError
from tests import _combos
from tests._redis import RedisProcess, free_port

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

pytestmark = pytest.mark.anyio



def _script(source: str) -> Script:
    return Script("test", source, hashlib.sha1(source.encode()).hexdigest())


ECHO = _script("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1, false, true}")
COUNT = _script("return redis.call('INCR', KEYS[1])")
ADD = _script("return redis.call('XADD', KEYS[1], '*', 'n', ARGV[1])")
PUSH = _script("return redis.call('RPUSH', KEYS[1], 'x')")
READ_GROUP = _script(
    "local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], 'c', 'COUNT', ARGV[2], 'STREAMS', "
    "KEYS[1], '>') local ids = {} for i, e in ipairs(r and r[1][2] or {}) do ids[i] = e[1] end "
    "return ids"
)
LEN = _script("return redis.call('LLEN', KEYS[1])")
PUSH_TWO = _script("return redis.call('RPUSH', KEYS[1], 'x', 'y')")


def _flush_scripts(redis_url: str) -> None:
    """SCRIPT FLUSH, so the next EVALSHA meets NOSCRIPT."""
    with redis.Redis.from_url(redis_url) as client:
        client.script_flush()


@pytest.fixture
async def driver(combo: tuple[str, str], redis_url: str) -> AsyncIterator[Driver]:
    d = connect(redis_url, combo[1])
    await d.server_version()  # opens it in this (the fixture's) task, as RedisJobQueue does
    try:
        yield d
    finally:
        await d.aclose()


@pytest.fixture
def sync(redis_url: str) -> Iterator[SyncDriver]:
    d = SyncDriver(redis_url)
    try:
        yield d
    finally:
        d.close()


async def test_picks_the_driver_for_the_running_loop(
    anyio_backend: str, combo: tuple[str, str], redis_url: str
) -> None:
    d = connect(redis_url)
    expected = "CoredisDriver" if anyio_backend == "trio" else "RespDriver"
    assert type(d).__name__ == expected
    assert running_library() == anyio_backend
    await d.aclose()


@pytest.mark.parametrize("combo", [("trio", "coredis")], ids=["trio"])
@pytest.mark.parametrize("name", ["resp", "redis-py"])
async def test_asyncio_drivers_are_refused_under_trio(
    combo: tuple[str, str], name: str, redis_url: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"driver='{name}'.*driver='coredis'"):
        connect(redis_url, name)


async def test_concurrent_commands_each_get_their_own_reply(
    driver: Driver, queue_name: str
) -> None:
    key = f"{queue_name}:k"

    async def ask(n: int) -> None:
        got[n] = await driver.eval(ECHO, [key], [f"a{n}", n])

    got: dict[int, object] = {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(ask, n)
        bulk = await driver.eval_many(ECHO, [key], [[f"b{n}", n] for n in range(50)])
    assert got == {n: [key, f"a{n}", n + 1, None, 1] for n in range(200)}
    assert bulk == [[key, f"b{n}", n + 1, None, 1] for n in range(50)]


async def test_a_cancelled_command_does_not_shift_later_replies(
    driver: Driver, queue_name: str
) -> None:
    key = f"{queue_name}:n"
    with anyio.fail_after(5):
        for _ in range(5):
            with anyio.CancelScope() as scope:
                scope.cancel()  # cancelled at its first checkpoint: sent or not, never read
                await driver.eval(COUNT, [key], [])
        counted = await driver.eval(COUNT, [key], [])
        assert await driver.eval(ECHO, [key], ["after", 1]) == [key, "after", 2, None, 1]
    assert 1 <= counted <= 6  # the cancelled ones may or may not have run, but in order


async def test_the_database_in_the_url_is_the_one_written(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/5"
    d = connect(url, combo[1])
    try:
        await d.server_version()  # opens it outside a cancel scope (coredis' rule)
        with anyio.fail_after(5):
            await d.eval(COUNT, [f"{queue_name}:db"], [])
    finally:
        await d.aclose()
    with redis.Redis.from_url(url) as db5, redis.Redis.from_url(redis_url) as db0:
        assert db5.get(f"{queue_name}:db") == b"1"
        assert db0.get(f"{queue_name}:db") is None


async def test_unknown_driver_names_the_choices(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="resp, redis-py, coredis"):
        connect(redis_url, "aioredis")


async def test_missing_coredis_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)
    monkeypatch.delitem(sys.modules, "streamjobs._drivers.coredis_driver", raising=False)
    with pytest.raises(ConfigurationError, match=r"streamjobs\[trio\]"):
        connect(redis_url, "coredis")


async def test_scripts_reply_alike_and_reload_after_flush(
    driver: Driver, redis_url: str, queue_name: str
) -> None:
    key = f"{queue_name}:k"
    assert await driver.eval(ECHO, [key], ["a", 41]) == [key, "a", 42, None, 1]
    _flush_scripts(redis_url)
    assert await driver.eval(ECHO, [key], ["b", 1]) == [key, "b", 2, None, 1]


async def test_eval_many_reloads_without_running_a_call_twice(
    driver: Driver, sync: SyncDriver, redis_url: str, queue_name: str
) -> None:
    key = f"{queue_name}:n"
    await driver.eval(COUNT, [key], [])  # loaded: 1
    _flush_scripts(redis_url)
    assert await driver.eval_many(COUNT, [key], [[], [], []]) == [2, 3, 4]
    assert await driver.eval_many(COUNT, [key], []) == []
    _flush_scripts(redis_url)
    assert sync.eval_many(COUNT, [key], [[], []]) == [5, 6]


async def test_streams_hashes_and_groups(driver: Driver, sync: SyncDriver, queue_name: str) -> None:
    stream, group = f"{queue_name}:s", "g"
    await driver.create_group(stream, group)
    await driver.create_group(stream, group)  # idempotent
    ids = [sync.eval(ADD, [stream], [n]) for n in range(3)]
    assert await driver.eval(READ_GROUP, [stream], [group, 2]) == ids[:2]
    assert await driver.read_stream(stream, ids[0], 10, None) == [
        (ids[1], {"n": "1"}), (ids[2], {"n": "2"}),
    ]  # fmt: skip
    assert await driver.stream_range(stream, 2, reverse=True) == [
        (ids[2], {"n": "2"}), (ids[1], {"n": "1"}),
    ]  # fmt: skip
    assert sync.stream_range(stream, 1, reverse=False) == [(ids[0], {"n": "0"})]
    assert await driver.hget(f"{queue_name}:none", "f") is None
    assert await driver.hgetall(f"{queue_name}:none") == {}
    assert (await driver.server_version())[:2] >= (6, 2)


async def test_blocking_reads_time_out_and_wake(driver: Driver, queue_name: str) -> None:
    key, stream = f"{queue_name}:wake", f"{queue_name}:s"
    with anyio.fail_after(5):
        assert await driver.wait_list(key, 0.05) is False
        assert await driver.read_stream(stream, "$", 10, 50) == []
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver.wait_list, key, 5.0)
            await anyio.sleep(0.05)
            await driver.eval(PUSH, [key], [])
        assert await driver.wait_list(key, 0.05) is False  # the waiter popped it


async def test_a_blocking_pop_returns_the_item_popped_or_none(
    driver: Driver, queue_name: str
) -> None:
    key = f"{queue_name}:control"
    with anyio.fail_after(5):
        assert await driver.pop_list(key, 0.05) is None  # timed out
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                got.append(await driver.pop_list(key, 5.0))

            got: list[str | None] = []
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            await driver.eval(PUSH_TWO, [key], [])
        assert await driver.pop_list(key, 0.05) == "y"  # the next one, at once
    assert got == ["x"]


async def test_the_script_after_a_blocking_pop_runs_once_it_returns_or_times_out(
    driver: Driver, queue_name: str
) -> None:
    key = f"{queue_name}:ready"
    with anyio.fail_after(5):
        assert await driver.wait_list_then_eval(key, 0.05, LEN, [key], []) == 0  # timed out
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                got.append(await driver.wait_list_then_eval(key, 5.0, LEN, [key], []))

            got: list[int] = []
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            await driver.eval(PUSH_TWO, [key], [])
    assert got == [1]  # one item popped, the other left when the script ran


async def test_the_script_after_a_blocking_pop_is_loaded_again_after_a_flush(
    driver: Driver, redis_url: str, queue_name: str
) -> None:
    key = f"{queue_name}:ready"
    await driver.eval(PUSH_TWO, [key], [])  # loads PUSH_TWO; LEN is not loaded yet
    _flush_scripts(redis_url)
    with anyio.fail_after(5):
        assert await driver.wait_list_then_eval(key, 5.0, LEN, [key], []) == 1
        assert await driver.wait_list_then_eval(key, 5.0, LEN, [key], []) == 0  # loaded now


async def test_cancelled_blocking_read_leaves_the_driver_usable(
    driver: Driver, queue_name: str
) -> None:
    key = f"{queue_name}:ready"
    with anyio.fail_after(5):
        with anyio.move_on_after(0.1) as scope:
            await driver.wait_list_then_eval(key, 10.0, LEN, [key], [])
        assert scope.cancelled_caught
        assert await driver.eval(ECHO, [key], ["x", 0]) == [key, "x", 1, None, 1]


async def test_missing_group_is_translated(driver: Driver, queue_name: str) -> None:
    with pytest.raises(MissingGroupError):
        await driver.eval(READ_GROUP, [f"{queue_name}:s"], ["nogroup", 1])


# coredis 6.9 leaves the memory streams of a connection that never connected unclosed, and
# they warn when collected: collect them here, so the warning is ignored here and not later.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_unreachable_redis_is_translated(combo: tuple[str, str]) -> None:
    d = connect(f"redis://127.0.0.1:{free_port()}/0", combo[1])
    try:
        with anyio.fail_after(10), pytest.raises(RedisUnavailableError):
            await d.server_version()
    finally:
        await d.aclose()
        gc.collect()


def test_sync_driver_translates_unreachable_redis() -> None:
    d = SyncDriver(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailableError):
        d.hget("k", "f")
    d.close()


async def test_a_dropped_connection_fails_cleanly_then_reconnects(
    driver: Driver, redis_url: str, queue_name: str
) -> None:
    key = f"{queue_name}:k"
    assert await driver.eval(ECHO, [key], ["a", 1]) == [key, "a", 2, None, 1]
    with redis.Redis.from_url(redis_url) as admin:
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    with anyio.fail_after(10):
        # the loss may be seen by this call; then the error must be ours, not the client's
        with contextlib.suppress(RedisUnavailableError):
            await driver.eval(ECHO, [key], ["b", 1])
        assert await driver.eval(ECHO, [key], ["c", 1]) == [key, "c", 2, None, 1]


async def test_a_password_in_the_url_authenticates(
    combo: tuple[str, str], redis_process: RedisProcess, queue_name: str
) -> None:
    redis_process.client().config_set("requirepass", "s3cret")
    d = connect(f"redis://:s3cret@127.0.0.1:{redis_process.port}/0", combo[1])
    try:
        await d.server_version()  # opens it outside a cancel scope (coredis' rule)
        with anyio.fail_after(5):
            assert await d.eval(COUNT, [f"{queue_name}:auth"], []) == 1
    finally:
        await d.aclose()
    wrong = connect(f"redis://:wrong@127.0.0.1:{redis_process.port}/0", combo[1])
    try:
        with pytest.raises(StreamJobsError):
            await wrong.server_version()
    finally:
        await wrong.aclose()
