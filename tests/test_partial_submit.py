"""Bulk submits that fail part way: the error names exactly which jobs were written, and
submitting the same jobs again with the same ids writes each exactly once.

A later chunk fails for real: Redis runs out of memory (maxmemory, noeviction) part way
through the pipeline, or the connection is cut before the replies come back. On every driver:
resp, redis-py and coredis on asyncio, coredis on trio, and the sync client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis

from streamjobs import JobService, PartialSubmitError, QueueFullError, RedisJobQueue
from streamjobs._replies import ENQUEUE_CHUNK
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests._redis import RedisProcess
from tests.faults._proxy import Proxy

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

pytestmark = pytest.mark.anyio

#: Five chunks of jobs of about 1 kB each; Redis gets room for a little more than one.
JOBS = 5 * ENQUEUE_CHUNK
BALLAST = "x" * 1000
ROOM = 400_000


@pytest.fixture
def server(redis_process: RedisProcess) -> Iterator[redis.Redis]:
    """A blocking client of this test's own redis-server, set to refuse writes when full."""
    client = redis_process.client()
    client.config_set("maxmemory-policy", "noeviction")
    try:
        yield client
    finally:
        client.close()


def specs(ids: list[str] | None = None) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = [{"handler": "echo", "args": (n, BALLAST)} for n in range(JOBS)]
    return jobs if ids is None else [{**job, "job_id": i} for job, i in zip(jobs, ids)]


def fill_up(client: redis.Redis) -> None:
    """Leave Redis room for about one chunk of jobs."""
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + ROOM)


def check_written_exactly(
    client: redis.Redis, queue: RedisJobQueue, err: PartialSubmitError
) -> None:
    """The ids the error says were written have records; those it says were not, none."""
    assert len(err.ids) == JOBS
    assert sorted(err.written + err.not_written + err.unknown) == sorted(err.ids)
    assert err.written == err.ids[: len(err.written)]  # whole chunks, in order
    assert len(err.written) % ENQUEUE_CHUNK == 0
    assert all(client.exists(queue.keys.job(i)) for i in err.written)
    assert not any(client.exists(queue.keys.job(i)) for i in err.not_written)


def check_each_once(client: redis.Redis, queue: RedisJobQueue, ids: list[str]) -> None:
    """Every job has its record and exactly one entry in its stream."""
    assert all(client.exists(queue.keys.job(i)) for i in ids)
    entries = [fields["id"] for _, fields in client.xrange(queue.keys.streams[2])]
    assert sorted(entries) == sorted(ids)


async def test_a_chunk_refused_after_others_were_written_raises_partial_submit_with_the_ids(
    combo: tuple[str, str], redis_process: RedisProcess, server: redis.Redis, queue_name: str
) -> None:
    queue = RedisJobQueue(redis_process.url, name=queue_name, driver=combo[1])
    async with JobService(queue=queue) as svc:
        fill_up(server)
        with anyio.fail_after(20), pytest.raises(PartialSubmitError) as caught:
            await svc.submit_many(specs())
        err = caught.value
        server.config_set("maxmemory", 0)
        assert isinstance(err.__cause__, QueueFullError)
        assert err.written and err.not_written and not err.unknown
        check_written_exactly(server, queue, err)
        with anyio.fail_after(20):
            assert await svc.submit_many(specs(err.ids)) == err.ids
        check_each_once(server, queue, err.ids)


async def test_replies_lost_with_the_connection_are_reported_unknown_and_a_resubmit_is_safe(
    combo: tuple[str, str], redis_process: RedisProcess, server: redis.Redis, queue_name: str
) -> None:
    proxy = Proxy(redis_process.port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.run)
        queue = RedisJobQueue(proxy.url, name=queue_name, driver=combo[1])
        async with JobService(queue=queue) as svc:
            # The third chunk holds an id already taken: its reply, the first with a 0 in it,
            # is the one the proxy drops, with the connection.
            ids = [f"job-{n}" for n in range(JOBS)]
            await svc.submit_job("echo", job_id=ids[2 * ENQUEUE_CHUNK + 5])
            proxy.cut_replies_with((b":0\r\n",), 1)
            try:
                with anyio.fail_after(20):
                    await svc.submit_many(specs(ids))
            except PartialSubmitError as err:
                assert err.ids == ids and err.unknown and not err.not_written
                check_written_exactly(server, queue, err)
                if combo[1] == "resp":  # ours keeps the replies that came before the cut:
                    # whole chunks, in order, never the third (how many of the first two
                    # arrive before it depends on how Redis and TCP batch the replies)
                    assert err.written == ids[: len(err.written)]
                    assert len(err.written) in (0, ENQUEUE_CHUNK, 2 * ENQUEUE_CHUNK)
            else:  # redis-py and coredis may send the pipeline again themselves
                assert combo[1] != "resp", "our driver never sends a command twice"
            assert proxy.cuts == 1
            with anyio.fail_after(20):
                assert await svc.submit_many(specs(ids)) == ids
            check_each_once(server, queue, ids)
        proxy.close()


def test_the_sync_client_raises_partial_submit_with_the_ids_written(
    redis_process: RedisProcess, server: redis.Redis, queue_name: str
) -> None:
    with SyncJobClient(redis_process.url, name=queue_name) as client:
        client.get_job_status("none")  # its first call connects and agrees on the partitions
        fill_up(server)
        with pytest.raises(PartialSubmitError) as caught:
            client.submit_many(specs())
        err = caught.value
        server.config_set("maxmemory", 0)
        assert isinstance(err.__cause__, QueueFullError)
        assert err.written and err.not_written and not err.unknown
        check_written_exactly(server, client.queue, err)
        assert client.submit_many(specs(err.ids)) == err.ids
        check_each_once(server, client.queue, err.ids)


async def test_a_bulk_submit_refused_whole_raises_its_error_and_writes_nothing(
    combo: tuple[str, str], redis_process: RedisProcess, server: redis.Redis, queue_name: str
) -> None:
    queue = RedisJobQueue(redis_process.url, name=queue_name, driver=combo[1])
    async with JobService(queue=queue) as svc:
        server.config_set("maxmemory", 1)
        with anyio.fail_after(20), pytest.raises(QueueFullError):
            await svc.submit_many(specs()[:ENQUEUE_CHUNK * 2])
        server.config_set("maxmemory", 0)
        assert server.xlen(queue.keys.streams[2]) == 0
