"""Our RESP driver as an operator sees it: URL options honoured, connections named in CLIENT
LIST, a bounded number of blocking connections however many callers wait, and a command that
cannot be encoded failing alone. asyncio only: the driver runs on asyncio."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
import redis

from streamjobs import AsyncWorkerPool, JobService, RedisJobQueue, RedisUnavailableError
from streamjobs._drivers.resp import MAX_STREAM_READERS, RespDriver
from streamjobs._scripts import Script
from tests._redis import RedisProcess
from tests.conftest import FAST

pytestmark = pytest.mark.anyio

_ECHO_SOURCE = "return {KEYS[1], ARGV[1]}"
ECHO = Script("echo", _ECHO_SOURCE, hashlib.sha1(_ECHO_SOURCE.encode()).hexdigest())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _named(client: redis.Redis, name: str) -> int:
    """How many connections CLIENT LIST shows under `name`."""
    return sum(1 for c in client.client_list() if c.get("name") == name)


@pytest.fixture
async def driver(redis_process: RedisProcess) -> AsyncIterator[RespDriver]:
    d = RespDriver(redis_process.url)
    try:
        yield d
    finally:
        await d.aclose()


async def test_connections_are_named_after_the_process_or_the_url(
    driver: RespDriver, redis_process: RedisProcess, queue_name: str
) -> None:
    admin = redis_process.client()
    with anyio.fail_after(5):
        await driver.eval(ECHO, [queue_name], ["a"])
        await driver.wait_list(f"{queue_name}:list", 0.01)  # a blocking connection too
    assert _named(admin, f"streamjobs:{os.getpid()}") == 2
    named = RespDriver(f"{redis_process.url}?client_name=billing-app")
    try:
        with anyio.fail_after(5):
            await named.eval(ECHO, [queue_name], ["a"])
            await named.read_stream(f"{queue_name}:s", "$", 1, 10)
        assert _named(admin, "billing-app") == 2
    finally:
        await named.aclose()


async def test_a_command_that_cannot_be_encoded_fails_alone(
    driver: RespDriver, queue_name: str
) -> None:
    """The bad call is refused before anything is sent: the next request on the same
    connection gets its own reply, not the reply to the good half of the failed one."""
    key = queue_name
    with anyio.fail_after(5):
        assert await driver.eval(ECHO, [key], ["warm"]) == [key, "warm"]  # connection open
        with pytest.raises(TypeError):
            await driver.eval_many(ECHO, [key], [["sent?"], [object()]])
        assert await driver.eval(ECHO, [key], ["next"]) == [key, "next"]
        assert await driver.eval(ECHO, [key], ["after"]) == [key, "after"]


@pytest.fixture
def silent_server() -> Iterator[tuple[int, socket.socket]]:
    """A port that accepts connections (the kernel does) but never answers; its backlog is
    full after one connection, so a second one hangs while connecting."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        yield port, server
    finally:
        filler.close()
        server.close()


async def test_socket_timeout_in_the_url_bounds_each_command(
    silent_server: tuple[int, socket.socket],
) -> None:
    port, server = silent_server
    conn, _ = server.accept()  # room in the backlog again: connecting succeeds
    try:
        d = RespDriver(f"redis://127.0.0.1:{port}/0?socket_timeout=0.3")
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(RedisUnavailableError):
            await d.server_version()  # the default would wait 15 s
        await d.aclose()
        assert time.monotonic() - started < 2
    finally:
        conn.close()


async def test_socket_connect_timeout_in_the_url_bounds_connecting(
    silent_server: tuple[int, socket.socket],
) -> None:
    port, _ = silent_server
    d = RespDriver(f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.3")
    started = time.monotonic()
    with anyio.fail_after(5), pytest.raises(RedisUnavailableError, match="connection"):
        await d.server_version()
    await d.aclose()
    assert time.monotonic() - started < 2


async def test_many_waiting_callers_share_a_bounded_set_of_connections(
    redis_process: RedisProcess, queue_name: str
) -> None:
    """200 callers waiting for results at once hold at most MAX_STREAM_READERS blocking
    connections (plus the one for commands), and every one of them gets its result."""
    admin = redis_process.client()
    url = f"{redis_process.url}?client_name=waiters"
    async with JobService(queue=RedisJobQueue(url, name=queue_name, driver="resp")) as svc:
        ids = await svc.submit_many([{"handler": "noop", "args": [n]} for n in range(200)])
        results: dict[str, Any] = {}
        most = 0

        async def wait(job_id: str) -> None:
            results[job_id] = (await svc.wait_for_result(job_id, timeout=60)).result

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                for job_id in ids:
                    tg.start_soon(wait, job_id)
                for _ in range(10):  # the waiters pile up while nothing completes
                    await anyio.sleep(0.05)
                    most = max(most, _named(admin, "waiters"))
                await tg.start(_serve, redis_process.url, queue_name)
                while len(results) < len(ids):
                    await anyio.sleep(0.05)
                    most = max(most, _named(admin, "waiters"))
                tg.cancel_scope.cancel()  # the pool
    assert results == {job_id: n for n, job_id in enumerate(ids)}
    assert MAX_STREAM_READERS <= most <= MAX_STREAM_READERS + 1


async def _serve(url: str, name: str, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """A pool of its own (its own connections) that runs the noop jobs."""

    async def noop(job: Any, progress: Any) -> Any:
        return job.args[0]

    queue = RedisJobQueue(url, name=name, driver="resp")
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST)) as svc:
        svc.register_handler("noop", noop)
        await svc.run_workers(8, task_status=task_status)
