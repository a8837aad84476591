"""Partitioned queues: a queue split into N partitions, each under a hash tag of its own, that
every client agrees on (the count is recorded in Redis), with every job in one partition that
its id names, and every worker pool serving every partition."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis

from streamjobs import (
    AsyncWorkerPool,
    JobDefinition,
    JobPriority,
    JobService,
    JobStatus,
    RedisJobQueue,
)
from streamjobs._keys import crc16, key_slot, partition_of, partition_tag
from streamjobs.errors import ConfigurationError, InvalidJobError
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests.conftest import FAST

combo, anyio_backend = _combos.combo, _combos.anyio_backend


def _crc16_bitwise(data: bytes) -> int:
    """CRC16-XMODEM bit by bit, as the Redis Cluster specification gives it."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_key_slots_are_redis_clusters() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert key_slot("foo") == 12182
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == crc16(b"foo{}{bar}") % 16384  # an empty tag is no tag
    rng = random.Random(7)
    for _ in range(200):
        data = rng.randbytes(rng.randrange(40))
        assert crc16(data) == _crc16_bitwise(data)


@pytest.mark.parametrize("n", [2, 3, 4, 16, 1024])
def test_each_partition_lands_in_its_own_even_slot_range(n: int) -> None:
    for p in {0, 1, n // 2, n - 1}:
        slot = key_slot("{" + partition_tag("orders", p, n) + "}:stream:normal")
        assert p * 16384 // n <= slot < (p + 1) * 16384 // n
    assert partition_tag("orders", 0, 1) == "orders"


def test_a_job_id_names_its_partition() -> None:
    assert partition_of("anything", 1) == 0
    assert partition_of("3.abc", 4) == 3
    assert partition_of("9.abc", 4) == partition_of("9.abc", 4) < 4  # out of range: hashed
    counts = Counter(partition_of(f"order-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 800


@pytest.mark.parametrize("bad", [0, 1025, True, "4", 2.0])
def test_a_bad_partition_count_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="partitions"):
        RedisJobQueue("redis://localhost:1/0", partitions=bad)  # type: ignore[arg-type]


@asynccontextmanager
async def service(
    url: str, name: str, combo: tuple[str, str], partitions: int | None = 4
) -> AsyncIterator[JobService]:
    """A connected service on `name` with fast leases, workers not started."""
    queue = RedisJobQueue(url, name=name, driver=combo[1], partitions=partitions)
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST)) as svc:
        yield svc


def keys_of(raw: redis.Redis, pattern: str) -> list[str]:
    return sorted(raw.scan_iter(match=pattern, count=1000))


@pytest.mark.anyio
async def test_one_partition_keeps_todays_key_layout(
    combo: tuple[str, str], redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    async with service(redis_url, queue_name, combo, partitions=None) as svc:
        job_id = await svc.submit_job("noop", delay=60)
        other = await svc.submit_job("noop")
        assert "." not in job_id and svc.queue.partition_count == 1
        assert svc.queue.parts == (svc.queue.keys,)
    base = f"streamjobs:{{{queue_name}}}:"
    assert keys_of(raw, f"*{queue_name}*") == sorted(
        [f"streamjobs:{queue_name}:partitions", f"{base}delayed", f"{base}events",
         f"{base}job:{job_id}", f"{base}job:{other}", f"{base}ready", f"{base}wake",
         *(f"{base}stream:{p}" for p in ("critical", "high", "normal", "low"))]
    )  # fmt: skip
    assert raw.get(f"streamjobs:{queue_name}:partitions") == "1"


@pytest.mark.anyio
async def test_ids_carry_their_partition_and_a_client_without_a_count_uses_the_recorded_one(
    combo: tuple[str, str], redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    async with service(redis_url, queue_name, combo, partitions=4) as svc:
        ids = [await svc.submit_job("noop", args=(i,)) for i in range(8)]
        ids += await svc.submit_many([{"handler": "noop"} for _ in range(8)])
    assert Counter(i.split(".")[0] for i in ids) == {"0": 4, "1": 4, "2": 4, "3": 4}
    for job_id in ids:  # each in its partition's keys only
        p = int(job_id.split(".")[0])
        assert raw.exists(f"streamjobs:{{{partition_tag(queue_name, p, 4)}}}:job:{job_id}")
    async with service(redis_url, queue_name, combo, partitions=None) as fresh:
        assert fresh.queue.partition_count == 4
        assert all([await fresh.get_job_status(i) for i in ids])
        assert (await fresh.get_metrics())["queue"]["pending"] == 16
    with SyncJobClient(redis_url, name=queue_name) as client:
        assert all(client.get_job_status(i) for i in ids)
        assert client.get_metrics()["queue"]["pending"] == 16


@pytest.mark.anyio
async def test_a_count_other_than_the_recorded_one_is_refused_and_writes_nothing(
    combo: tuple[str, str], redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    async with service(redis_url, queue_name, combo, partitions=2):
        pass
    before = keys_of(raw, f"*{queue_name}*")
    with pytest.raises(ConfigurationError, match=rf"{queue_name}.*2 partition.*partitions=3"):
        async with service(redis_url, queue_name, combo, partitions=3):
            pass
    with (
        SyncJobClient(redis_url, name=queue_name, partitions=5) as client,
        pytest.raises(ConfigurationError, match="partitions=5"),
    ):
        client.submit_job("noop")
    assert keys_of(raw, f"*{queue_name}*") == before


@pytest.mark.anyio
async def test_a_partition_key_keeps_jobs_together_and_none_spreads_them_evenly(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    async with service(redis_url, queue_name, combo) as svc:
        q = svc.queue
        tenant = {q.partition_of(await svc.submit_job("noop", partition_key="t-42"))
                  for _ in range(10)}  # fmt: skip
        bulk = await svc.submit_many([{"handler": "noop", "partition_key": "t-42"}] * 10)
        assert len(tenant | {q.partition_of(i) for i in bulk}) == 1
        spread = Counter([q.partition_of(await svc.submit_job("noop")) for _ in range(40)])
        assert spread == {0: 10, 1: 10, 2: 10, 3: 10}
        own = await svc.submit_job("noop", job_id="order-7")  # its id decides
        assert own == "order-7" and q.partition_of(own) == partition_of("order-7", 4)
        with pytest.raises(InvalidJobError, match=r"partition_key.*job_id"):
            await svc.submit_job("noop", job_id="order-8", partition_key="t-42")
        with pytest.raises(InvalidJobError, match=r"jobs\[1\]\.partition_key"):
            await svc.submit_many([{"handler": "noop"}, {"handler": "noop", "partition_key": ""}])
        assert await svc.get_job_status("order-8") is None


@pytest.mark.anyio
async def test_one_partition_takes_and_ignores_a_partition_key(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    async with service(redis_url, queue_name, combo, partitions=1) as svc:
        job_id = await svc.submit_job("noop", partition_key="t-1", job_id="mine")
        [bulk] = await svc.submit_many([{"handler": "noop", "partition_key": "t-1"}])
        assert job_id == "mine" and "." not in bulk
        with pytest.raises(InvalidJobError, match="partition_key"):
            await svc.submit_job("noop", partition_key=42)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_calls_by_id_reach_the_jobs_partition(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    async with service(redis_url, queue_name, combo) as svc:
        ids = [await svc.submit_job("noop", job_id=f"job-{i}") for i in range(8)]
        assert len({svc.queue.partition_of(i) for i in ids}) > 1
        assert all([await svc.cancel_job(i) for i in ids])
        assert {await svc.get_job_status(i) for i in ids} == {JobStatus.CANCELLED}
        assert (await svc.get_metrics())["queue"]["cancelled"] == 8


# -- workers ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_worker_takes_every_critical_job_of_every_partition_before_any_lower(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    order: list[int] = []

    async def record(job: JobDefinition, progress: Any) -> None:
        order.append(int(job.priority))

    async with service(redis_url, queue_name, combo) as svc:
        svc.register_handler("record", record)
        specs = [  # partition p: p + 1 critical jobs, two of every lower priority
            {"handler": "record", "priority": prio, "job_id": f"{p}.{prio.name}-{i}"}
            for p in range(4)
            for prio in JobPriority
            for i in range(p + 1 if prio is JobPriority.CRITICAL else 2)
        ]
        ids = await svc.submit_many(specs)
        await svc.start_workers(1)
        with anyio.fail_after(20):
            for job_id in ids:
                await svc.wait_for_result(job_id)
    assert order == sorted(order, reverse=True)
    assert len(order) == len(ids)


@pytest.mark.anyio
async def test_every_job_through_four_partitions_completes_exactly_once_with_several_pools(
    combo: tuple[str, str], redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    runs: Counter[str] = Counter()

    async def count(job: JobDefinition, progress: Any) -> str:
        runs[job.id] += 1
        await anyio.lowlevel.checkpoint()
        return job.id

    async with (
        service(redis_url, queue_name, combo) as one,
        service(redis_url, queue_name, combo) as two,
    ):
        for svc in (one, two):
            svc.register_handler("count", count)
        prios = list(JobPriority)
        ids = await one.submit_many(
            [{"handler": "count", "priority": prios[i % 4]} for i in range(200)]
        )
        await one.start_workers(3)
        await two.start_workers(2)
        ids += [await two.submit_job("count", priority=prios[i % 4]) for i in range(40)]
        with anyio.fail_after(30):
            for job_id in ids:
                assert (await one.wait_for_result(job_id)).result == job_id
        metrics = await two.get_metrics()
        assert metrics["workers"]["total"] == 5  # every pool counted once, not per partition
    assert runs == Counter(ids)
    assert metrics["queue"]["completed"] == len(ids) and metrics["queue"]["pending"] == 0


@pytest.mark.anyio
async def test_a_retry_and_a_delayed_job_are_promoted_in_every_partition(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    async def flaky(job: JobDefinition, progress: Any) -> int:
        if job.attempts < 2:
            raise RuntimeError("once")
        return job.attempts

    async with service(redis_url, queue_name, combo) as svc:
        svc.register_handler("flaky", flaky)
        await svc.start_workers(2)
        retried = [
            await svc.submit_job("flaky", retry_delay=0.1, partition_key=f"r{k}") for k in range(8)
        ]
        delayed = [await svc.submit_job("flaky", delay=0.3, max_retries=0, job_id=f"{p}.d")
                   for p in range(4)]  # fmt: skip
        assert {svc.queue.partition_of(i) for i in retried} == {0, 1, 2, 3}
        with anyio.fail_after(20):
            for job_id in retried:
                result = await svc.wait_for_result(job_id)
                assert (result.status, result.result) == (JobStatus.COMPLETED, 2)
            for job_id in delayed:
                result = await svc.wait_for_result(job_id)
                assert result.status is JobStatus.DEAD_LETTER or result.status is JobStatus.FAILED
        assert (await svc.get_metrics())["queue"]["retried"] == 8


@pytest.mark.anyio
async def test_a_job_abandoned_by_a_dead_worker_is_taken_over_in_its_partition(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    async def echo(job: JobDefinition, progress: Any) -> Any:
        return job.args[0]

    async with service(redis_url, queue_name, combo) as svc:
        q = svc.queue
        ids = [await svc.submit_job("echo", args=(p,), job_id=f"{p}.lost") for p in range(4)]
        for p in range(4):  # a worker takes one job in each partition, then dies
            [d] = await q.start("ghost-worker", 1, partition=p)
            assert (d.job_id, d.partition) == (f"{p}.lost", p)
        svc.register_handler("echo", echo)
        await svc.start_workers(2)
        with anyio.fail_after(20):
            for p, job_id in enumerate(ids):
                result = await svc.wait_for_result(job_id)
                assert (result.status, result.result, result.attempts) == (
                    JobStatus.COMPLETED, p, 2,
                )  # fmt: skip
                assert (await q.record(job_id))["crashes"] == "1"


# -- reading across partitions ------------------------------------------------------------


@pytest.mark.anyio
async def test_dead_letters_metrics_and_events_span_every_partition(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    async def boom(job: JobDefinition, progress: Any) -> None:
        if job.kwargs.get("fail"):
            raise RuntimeError(f"boom {job.id}")

    async with service(redis_url, queue_name, combo) as svc:
        svc.register_handler("boom", boom)
        seen: list[dict[str, Any]] = []
        follow = svc.events()
        all_completed = anyio.Event()
        done: list[str] = []

        async def collect() -> None:
            async for event in follow:
                seen.append(event)
                completed = {e["job_id"] for e in seen if e["type"] == "job.completed"}
                if done and completed >= set(done):
                    all_completed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect)
            await anyio.sleep(0.3)  # the follower took its place in every partition's stream
            dead = [await svc.submit_job("boom", kwargs={"fail": True}, max_retries=0,
                                         job_id=f"{p}.dead") for p in range(4)]  # fmt: skip
            done += [await svc.submit_job("boom", partition_key=f"k{k}") for k in range(8)]
            await svc.start_workers(2)
            with anyio.fail_after(20):
                for job_id in dead + done:
                    await svc.wait_for_result(job_id)
                await all_completed.wait()
            tg.cancel_scope.cancel()
        await follow.aclose()
        assert {e["partition"] for e in seen} == {0, 1, 2, 3}
        assert len({e["id"] + str(e["partition"]) for e in seen}) == len(seen)  # none twice

        letters = await svc.get_dead_letters()
        assert sorted(d.id for d in letters) == sorted(dead)
        assert all(d.error == f"RuntimeError: boom {d.id}" or d.id in (d.error or "")
                   for d in letters)  # fmt: skip
        assert [d.id for d in await svc.get_dead_letters(2)] == [d.id for d in letters[:2]]
        metrics = await svc.get_metrics()
        assert (metrics["queue"]["dead_letter"], metrics["queue"]["completed"]) == (4, 8)
        assert metrics["workers"]["total"] == 2

        assert await svc.retry_dead_letter("3.dead")
        with anyio.fail_after(10):  # it runs again, in its partition, and fails again
            again = await svc.wait_for_result("3.dead")
        assert (again.status, again.attempts) == (JobStatus.DEAD_LETTER, 1)
        assert await svc.purge_dead_letters(limit=3) == (3, 1)
        assert len(await svc.get_dead_letters()) == 1
        assert await svc.purge_dead_letters() == (1, 0)


def test_the_cli_reads_and_submits_across_partitions(
    redis_url: str, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from streamjobs.cli import main

    conn = ["--queue", queue_name, "--redis-url", redis_url]

    def cli(*args: str) -> Any:
        assert main([*args, *conn, "--json"]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    with SyncJobClient(redis_url, name=queue_name, partitions=4) as client:
        ids = client.submit_many([{"handler": "noop"} for _ in range(8)])
        keyed = cli("submit", "noop", "--partition-key", "t-1", "--partitions", "4")["id"]
        assert client.queue.partition_of(keyed) == client.queue.partition_of(
            client.submit_job("noop", partition_key="t-1")
        )
    info = cli("info")
    assert (info["partitions"], info["pending_total"]) == (4, 10)
    assert cli("jobs", "show", ids[-1])["id"] == ids[-1]
    assert main(["info", *conn, "--partitions", "2"]) == 1
    assert "partitions=2" in capsys.readouterr().err
    assert main(["events", "-n", "20", *conn, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and {json.loads(line)["type"] for line in lines} == {"job.queued"}


@pytest.mark.anyio
async def test_an_immediate_stop_hands_back_the_jobs_of_every_partition(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    started = anyio.Event()
    running: set[str] = set()

    async def slow(job: JobDefinition, progress: Any) -> str:
        running.add(job.id)
        if len(running) == 8:
            started.set()
        await anyio.sleep(30)
        return job.id

    async with service(redis_url, queue_name, combo) as svc:
        svc.register_handler("slow", slow)
        ids = [
            await svc.submit_job("slow", job_id=f"{p}.slow-{i}") for p in range(4) for i in range(2)
        ]
        await svc.start_workers(8)
        with anyio.fail_after(10):
            await started.wait()
        await svc.stop_workers(graceful=False)
        assert {await svc.get_job_status(i) for i in ids} == {JobStatus.PENDING}
        metrics = await svc.get_metrics()
        assert (metrics["queue"]["pending"], metrics["workers"]["total"]) == (8, 0)


@pytest.mark.anyio
async def test_a_schedule_fires_on_a_partitioned_queue_and_its_runs_complete(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    ran: list[str] = []
    two = anyio.Event()

    async def tick(job: JobDefinition, progress: Any) -> str:
        ran.append(job.id)
        if len(ran) == 2:
            two.set()
        return job.id

    async with service(redis_url, queue_name, combo, partitions=3) as svc:
        svc.register_handler("tick", tick)
        await svc.schedule("often", "tick", every=0.25)
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 2)
            with anyio.fail_after(10):
                await two.wait()
            [listed] = await svc.get_schedules()
            await svc.unschedule("often")
            await svc.stop_workers()
        assert listed.name == "often" and listed.fired >= 2
        for job_id in ran[:2]:
            assert job_id.startswith("sched:often:") and svc.queue.partition_of(job_id) == 0
            result = await svc.get_job_result(job_id)
            assert result is not None and result.status == JobStatus.COMPLETED
            assert result.result == job_id
