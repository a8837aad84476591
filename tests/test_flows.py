"""Workflows: jobs that wait for other jobs (depends_on), chains and groups, each released by
the script that settles its last dependency, on asyncio and trio against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import redis

from streamjobs import (
    AsyncWorkerPool,
    InvalidJobError,
    JobDefinition,
    JobFailed,
    JobService,
    JobStatus,
    RedisJobQueue,
)
from streamjobs.cli._inspect import collect_info
from streamjobs.sync import SyncJobClient
from tests.conftest import FAST, queue_keys

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def service(url: str, name: str, **queue_options: Any) -> AsyncIterator[JobService]:
    """A connected service on queue `name` with fast leases, workers not started."""
    queue = RedisJobQueue(url, name=name, **queue_options)
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST)) as svc:
        yield svc


async def step(job: JobDefinition, progress: Any) -> dict[str, Any]:
    """Returns its name and the dependency results it was given."""
    return {"name": job.kwargs.get("name"), "saw": job.dependency_results}


async def add(job: JobDefinition, progress: Any) -> int:
    """Its argument plus the results of its dependencies."""
    return int(job.args[0]) + sum(int(r or 0) for r in job.dependency_results.values())


async def boom(job: JobDefinition, progress: Any) -> None:
    raise JobFailed("boom")


async def test_a_diamond_runs_in_order_with_results_passed(svc: JobService) -> None:
    order: list[str] = []

    async def record(job: JobDefinition, progress: Any) -> dict[str, Any]:
        order.append(job.kwargs["name"])
        return await step(job, progress)

    svc.register_handler("step", record)
    a = await svc.submit_job("step", kwargs={"name": "a"})
    b = await svc.submit_job("step", kwargs={"name": "b"}, depends_on=[a])
    c = await svc.submit_job("step", kwargs={"name": "c"}, depends_on=[a], priority="high")
    d = await svc.submit_job("step", kwargs={"name": "d"}, depends_on=[b, c, b])
    assert [await svc.get_job_status(i) for i in (a, b, c, d)] == [
        JobStatus.PENDING, JobStatus.WAITING, JobStatus.WAITING, JobStatus.WAITING
    ]  # fmt: skip
    assert (await svc.get_metrics())["queue"]["waiting"] == 3
    assert (await collect_info(svc))["waiting"] == 3  # what `streamjobs info` shows
    assert (await svc.get_metrics())["queue"]["pending"] == 1
    await svc.start_workers(3)
    last = await svc.wait_for_result(d, timeout=10)
    assert order[0] == "a" and order[-1] == "d" and sorted(order[1:3]) == ["b", "c"]
    a_result = {"name": "a", "saw": {}}
    assert last.result == {
        "name": "d",
        "saw": {b: {"name": "b", "saw": {a: a_result}}, c: {"name": "c", "saw": {a: a_result}}},
    }
    assert (await svc.get_metrics())["queue"]["waiting"] == 0


async def test_a_failed_dependency_cancels_its_dependents_down_the_line(
    svc: JobService,
) -> None:
    svc.register_handler("boom", boom)
    svc.register_handler("step", step)
    a = await svc.submit_job("boom")
    b = await svc.submit_job("step", depends_on=[a])
    c = await svc.submit_job("step", depends_on=[b])
    anyway = await svc.submit_job("step", depends_on=[a], on_dependency_failure="run")
    await svc.start_workers(2)
    ran = await svc.wait_for_result(anyway, timeout=10)
    assert ran.status is JobStatus.COMPLETED and ran.result["saw"] == {a: None}
    b_result, c_result = await svc.wait_for_result(b, 5), await svc.wait_for_result(c, 5)
    assert b_result.status is JobStatus.CANCELLED and c_result.status is JobStatus.CANCELLED
    assert b_result.error == f"dependency {a} ended FAILED"
    assert c_result.error == f"dependency {b} ended CANCELLED"
    # a job submitted after its dependency failed is cancelled at once
    late = await svc.submit_job("step", depends_on=[a])
    assert (await svc.get_job_result(late)).error == f"dependency {a} ended FAILED"  # type: ignore[union-attr]
    metrics = (await svc.get_metrics())["queue"]
    assert metrics["waiting"] == 0 and metrics["cancelled"] == 3 and metrics["completed"] == 1


async def test_cancelling_a_waiting_job_cancels_what_waits_for_it(svc: JobService) -> None:
    a = await svc.submit_job("step", delay=60)
    b = await svc.submit_job("step", depends_on=[a])
    c = await svc.submit_job("step", depends_on=[b])
    assert (await svc.get_metrics())["queue"]["waiting"] == 2
    assert await svc.cancel_job(b)
    assert await svc.get_job_status(c) is JobStatus.CANCELLED
    assert (await svc.get_metrics())["queue"]["waiting"] == 0
    assert await svc.get_job_status(a) is JobStatus.SCHEDULED


async def test_two_dependencies_finishing_at_once_release_their_dependent_once(
    redis_url: str, queue_name: str
) -> None:
    runs: list[str] = []
    arrived: list[str] = []
    both = anyio.Event()

    async def together(job: JobDefinition, progress: Any) -> str:
        arrived.append(job.id)
        if len(arrived) % 2 == 0:
            both.set()
        with anyio.fail_after(5):
            await both.wait()
        return job.id

    async def counted(job: JobDefinition, progress: Any) -> None:
        runs.append(job.id)

    async with service(redis_url, queue_name) as one, service(redis_url, queue_name) as two:
        for svc in (one, two):
            svc.register_handler("together", together)
            svc.register_handler("counted", counted)
        await one.start_workers(1)
        await two.start_workers(1)
        for _ in range(5):
            both = anyio.Event()
            deps = await one.submit_group([{"handler": "together"}, {"handler": "together"}])
            dependent = await one.submit_job("counted", depends_on=deps)
            result = await one.wait_for_result(dependent, timeout=10)
            assert result.status is JobStatus.COMPLETED and result.attempts == 1
        await anyio.sleep(0.2)
        queue = (await one.get_metrics())["queue"]
        assert len(runs) == len(set(runs)) == 5
        assert queue["pending"] == queue["running"] == queue["waiting"] == 0


async def test_an_unknown_dependency_is_refused_and_nothing_is_written(
    svc: JobService, raw: redis.Redis
) -> None:
    known = await svc.submit_job("step", delay=60)
    before = queue_keys(raw, svc)
    with pytest.raises(InvalidJobError, match=r"depends_on.*no job nope"):
        await svc.submit_job("step", depends_on=[known, "nope"])
    with pytest.raises(InvalidJobError, match="no job nope"):
        await svc.submit_chain([{"handler": "step"}, {"handler": "step", "depends_on": ["nope"]}])
    with pytest.raises(InvalidJobError, match="itself"):
        await svc.submit_job("step", job_id="me", depends_on=["me"])
    with pytest.raises(InvalidJobError, match="on_dependency_failure"):
        await svc.submit_job("step", depends_on=[known], on_dependency_failure="retry")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match=r"jobs\[1\].timeout"):
        await svc.submit_group([{"handler": "step"}], then={"handler": "step", "timeout": -1})
    assert queue_keys(raw, svc) == before
    assert (await svc.get_metrics())["queue"]["waiting"] == 0


async def test_a_chain_passes_each_result_on_and_a_group_gathers_them(
    svc: JobService, redis_url: str
) -> None:
    svc.register_handler("add", add)
    chain = await svc.submit_chain([{"handler": "add", "args": [n]} for n in (1, 2, 3)])
    group = await svc.submit_group(
        [{"handler": "add", "args": [n]} for n in (10, 20, 30)],
        then={"handler": "add", "args": [1]},
    )
    with SyncJobClient(redis_url, name=svc.queue.keys.name) as client:
        sync_chain = client.submit_chain(
            [{"handler": "add", "args": [5]}, {"handler": "add", "args": [5]}]
        )
        sync_dependent = client.submit_job("add", args=[100], depends_on=[sync_chain[-1]])
        assert client.get_job_status(sync_dependent) is JobStatus.WAITING
    assert len(chain) == 3 and len(group) == 4
    assert await svc.get_job_status(chain[2]) is JobStatus.WAITING
    await svc.start_workers(3)
    assert (await svc.wait_for_result(chain[-1], timeout=10)).result == 6
    assert (await svc.wait_for_result(group[-1], timeout=10)).result == 61
    assert (await svc.wait_for_result(sync_dependent, timeout=10)).result == 110
    job = await svc.get_job(group[-1])
    assert job is not None and job.dependency_results == dict(zip(group[:3], [10, 20, 30]))
    first = await svc.get_job(chain[0])
    assert first is not None and first.dependency_results == {}


async def test_a_dependent_keeps_its_own_delay_once_released(svc: JobService) -> None:
    svc.register_handler("add", add)
    a = await svc.submit_job("add", args=[1])
    later = await svc.submit_job("add", args=[1], depends_on=[a], delay=60)
    assert await svc.get_job_status(later) is JobStatus.WAITING
    await svc.start_workers(1)
    await svc.wait_for_result(a, timeout=5)
    assert await svc.get_job_status(later) is JobStatus.SCHEDULED
    assert (await svc.get_metrics())["queue"]["scheduled"] == 1


async def test_a_dependencys_result_outlives_its_ttl_for_a_waiting_dependent(
    redis_url: str, queue_name: str
) -> None:
    gate = anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> str:
        with anyio.fail_after(5):
            await gate.wait()
        return "slow"

    async with service(redis_url, queue_name, result_ttl=0.3) as svc:
        svc.register_handler("add", add)
        svc.register_handler("slow", slow)
        svc.register_handler("step", step)
        quick = await svc.submit_job("add", args=[7])
        held = await svc.submit_job("slow")
        dependent = await svc.submit_job("step", depends_on=[quick, held])
        await svc.start_workers(2)
        await svc.wait_for_result(quick, timeout=5)
        await anyio.sleep(0.6)
        assert await svc.get_job_status(quick) is None  # its own result expired
        gate.set()
        result = await svc.wait_for_result(dependent, timeout=5)
        assert result.result["saw"] == {quick: 7, held: "slow"}


async def test_a_partitioned_queue_runs_a_chain_in_one_partition(
    redis_url: str, queue_name: str
) -> None:
    async with service(redis_url, queue_name, partitions=3) as svc:
        svc.register_handler("add", add)
        chain = await svc.submit_chain([{"handler": "add", "args": [n]} for n in (1, 2, 3, 4)])
        assert len({job_id.split(".")[0] for job_id in chain}) == 1
        others = [await svc.submit_job("add", args=[0]) for _ in range(3)]
        (elsewhere,) = [i for i in others if i.split(".")[0] != chain[0].split(".")[0]][:1]
        with pytest.raises(InvalidJobError, match="span partitions"):
            await svc.submit_job("add", args=[0], depends_on=[chain[0], elsewhere])
        after = await svc.submit_job("add", args=[100], depends_on=[chain[-1]])
        many = await svc.submit_many(
            [{"handler": "add", "args": [n], "depends_on": [chain[-1]]} for n in (1, 2)]
        )
        assert {i.split(".")[0] for i in [after, *many]} == {chain[0].split(".")[0]}
        await svc.start_workers(2)
        assert (await svc.wait_for_result(chain[-1], timeout=10)).result == 10
        assert (await svc.wait_for_result(after, timeout=10)).result == 110
        assert [(await svc.wait_for_result(i, timeout=10)).result for i in many] == [11, 12]


async def test_a_dead_letter_cancels_its_dependents_and_a_retried_dependency_releases_once(
    svc: JobService,
) -> None:
    tries: list[int] = []

    async def flaky(job: JobDefinition, progress: Any) -> str:
        tries.append(job.attempts)
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return "fine"

    svc.register_handler("flaky", flaky)
    svc.register_handler("step", step)
    lost = await svc.submit_job("nobody-handles-this")
    orphan = await svc.submit_job("step", depends_on=[lost])
    retried = await svc.submit_job("flaky", retry_delay=0.05)
    after = await svc.submit_job("step", depends_on=[retried])
    await svc.start_workers(2)
    orphan_result = await svc.wait_for_result(orphan, timeout=10)
    assert orphan_result.status is JobStatus.CANCELLED
    assert orphan_result.error == f"dependency {lost} ended DEAD_LETTER"
    after_result = await svc.wait_for_result(after, timeout=10)
    assert after_result.result["saw"] == {retried: "fine"} and after_result.attempts == 1
    assert len(tries) == 2


async def test_cancelling_a_running_dependency_cancels_its_dependents(
    svc: JobService, raw: redis.Redis
) -> None:
    started = anyio.Event()

    async def hang(job: JobDefinition, progress: Any) -> None:
        started.set()
        await anyio.sleep(30)

    svc.register_handler("hang", hang)
    running = await svc.submit_job("hang")
    waiting = await svc.submit_job("step", depends_on=[running])
    await svc.start_workers(1)
    with anyio.fail_after(5):
        await started.wait()
    assert await svc.cancel_job(running)
    result = await svc.get_job_result(waiting)
    assert result is not None and result.status is JobStatus.CANCELLED
    assert result.error == f"dependency {running} ended CANCELLED"
    events = [(f["type"], f["job_id"]) for _, f in raw.xrange(svc.queue.keys.events)]
    assert ("job.waiting", waiting) in events and ("job.cancelled", waiting) in events
