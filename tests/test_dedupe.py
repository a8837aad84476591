"""Deduplication: submits sharing a dedupe key queue one job while the key's job stands for
them (until it is done, for a throttle window, or debounced with the last submit winning),
however many processes and threads submit at once. On every event loop and driver."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis

from streamjobs import (
    AsyncWorkerPool,
    InvalidJobError,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
    _codec,
)
from streamjobs.cli import main
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests.conftest import FAST

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

pytestmark = pytest.mark.anyio


@pytest.fixture
async def svc(redis_url: str, queue_name: str, combo: tuple[str, str]) -> AsyncIterator[JobService]:
    """A connected service on the combo's driver, with fast leases; workers not started."""
    queue = RedisJobQueue(redis_url, name=queue_name, driver=combo[1])
    async with JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST)) as service:
        yield service


def job_count(raw: redis.Redis, svc: JobService) -> int:
    return len(list(raw.scan_iter(match=f"{svc.queue.keys.job_prefix}*", count=1000)))


async def submit_at_once(
    svc: JobService, redis_url: str, n_async: int, n_sync: int, **options: Any
) -> list[str]:
    """`n_async` submit_job calls from concurrent tasks and `n_sync` from a thread's sync
    client, all at once with the same options; the ids they returned."""
    ids: list[str] = []

    async def one(n: int) -> None:
        ids.append(await svc.submit_job("work", args=(n,), **options))

    def from_thread() -> None:
        with SyncJobClient(redis_url, name=svc.queue.keys.name) as client:
            for n in range(n_sync):
                ids.append(client.submit_job("work", args=(1000 + n,), **options))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, from_thread)
            for n in range(n_async):
                tg.start_soon(one, n)
    return ids


async def test_concurrent_submits_until_done_queue_one_job_until_it_is_done(
    svc: JobService, raw: redis.Redis, redis_url: str
) -> None:
    ids = await submit_at_once(svc, redis_url, 15, 5, dedupe_key="sync-user-42")
    assert len(ids) == 20 and len(set(ids)) == 1
    assert job_count(raw, svc) == 1
    svc.register_handler("work", lambda job, progress: job.args[0])
    await svc.start_workers(1)
    await svc.wait_for_result(ids[0], timeout=10)
    again = await svc.submit_job("work", args=(7,), dedupe_key="sync-user-42")
    assert again != ids[0]  # the first is done: a new job is queued
    assert (await svc.wait_for_result(again, timeout=10)).result == 7


async def test_until_done_with_a_window_lets_a_new_job_in_once_it_passed(
    svc: JobService, raw: redis.Redis
) -> None:
    first = await svc.submit_job("work", dedupe_key="k", dedupe_for=0.3)
    assert await svc.submit_job("work", dedupe_key="k", dedupe_for=0.3) == first
    await anyio.sleep(0.4)  # the first job still waits, but the window passed
    second = await svc.submit_job("work", dedupe_key="k", dedupe_for=0.3)
    assert second != first and job_count(raw, svc) == 2


async def test_throttle_queues_one_job_per_window_even_once_it_is_done(
    svc: JobService, raw: redis.Redis, redis_url: str
) -> None:
    options: dict[str, Any] = {"dedupe_key": "report", "dedupe_for": 1.5, "dedupe_mode": "throttle"}
    ids = await submit_at_once(svc, redis_url, 8, 4, **options)
    assert len(set(ids)) == 1 and job_count(raw, svc) == 1
    svc.register_handler("work", lambda job, progress: job.args[0])
    await svc.start_workers(1)
    await svc.wait_for_result(ids[0], timeout=5)
    window_left = raw.pttl(svc.queue.keys.dedupe("report"))
    assert window_left > 100  # still within the window
    assert await svc.submit_job("work", args=(9,), **options) == ids[0]  # done, yet throttled
    await anyio.sleep(window_left / 1000 + 0.05)
    later = await svc.submit_job("work", args=(9,), **options)
    assert later != ids[0] and (await svc.wait_for_result(later, timeout=5)).result == 9


async def test_debounce_keeps_the_last_submit_and_pushes_the_start_back(
    svc: JobService, raw: redis.Redis
) -> None:
    calls: list[tuple[Any, float]] = []

    async def work(job: JobDefinition, progress: Any) -> Any:
        calls.append((job.args[0], time.monotonic()))
        return job.args[0]

    svc.register_handler("work", work)
    await svc.start_workers(1)
    options: dict[str, Any] = {"dedupe_key": "search", "dedupe_for": 0.4, "dedupe_mode": "debounce"}
    first = await svc.submit_job("work", args=("a",), **options)
    first_due = raw.zscore(svc.queue.keys.delayed, first)
    assert await svc.get_job_status(first) is JobStatus.SCHEDULED
    last = 0.0
    for text in ("ab", "abc"):
        await anyio.sleep(0.2)
        assert await svc.submit_job("work", args=(text,), kwargs={"n": 1}, **options) == first
        last = time.monotonic()
    due = raw.zscore(svc.queue.keys.delayed, first)
    assert first_due is not None and due is not None and due >= first_due + 350
    result = await svc.wait_for_result(first, timeout=5)
    assert result.result == "abc" and [c[0] for c in calls] == ["abc"]
    assert calls[0][1] - last >= 0.35  # it waited the window after the last submit
    job = await svc.get_job(first)
    assert job is not None and job.kwargs == {"n": 1}
    assert job_count(raw, svc) == 1


async def test_a_debounced_job_that_started_is_left_alone(svc: JobService) -> None:
    started = anyio.Event()

    async def work(job: JobDefinition, progress: Any) -> Any:
        started.set()
        await anyio.sleep(0.5)
        return job.args[0]

    svc.register_handler("work", work)
    await svc.start_workers(2)
    options: dict[str, Any] = {"dedupe_key": "d", "dedupe_for": 0.1, "dedupe_mode": "debounce"}
    first = await svc.submit_job("work", args=(1,), **options)
    with anyio.fail_after(5):
        await started.wait()
    second = await svc.submit_job("work", args=(2,), **options)
    assert second != first
    assert (await svc.wait_for_result(first, timeout=5)).result == 1
    assert (await svc.wait_for_result(second, timeout=5)).result == 2


async def test_concurrent_debounced_submits_leave_one_job_with_one_of_their_arguments(
    svc: JobService, raw: redis.Redis, redis_url: str
) -> None:
    options: dict[str, Any] = {"dedupe_key": "d", "dedupe_for": 30, "dedupe_mode": "debounce"}
    ids = await submit_at_once(svc, redis_url, 15, 5, **options)
    assert len(set(ids)) == 1 and job_count(raw, svc) == 1
    job = await svc.get_job(ids[0])
    assert job is not None and job.args[0] in {*range(15), *range(1000, 1005)}


async def test_submit_many_and_the_cli_deduplicate_too(
    svc: JobService, raw: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await svc.submit_many(
        [
            {"handler": "work", "dedupe_key": "a"},
            {"handler": "work"},
            {"handler": "work", "dedupe_key": "a", "args": (2,)},
            {"handler": "work", "dedupe_key": "b"},
        ]
    )
    assert ids[0] == ids[2] and len(set(ids)) == 3 and job_count(raw, svc) == 3
    name = svc.queue.keys.name
    with SyncJobClient(redis_url, name=name) as client:
        more = client.submit_many([{"handler": "work", "dedupe_key": "b"}, {"handler": "work"}])
    assert more[0] == ids[3] and job_count(raw, svc) == 4
    cli = ["submit", "work", "--redis-url", redis_url, "--queue", name, "--dedupe-key", "a"]
    assert await anyio.to_thread.run_sync(main, cli) == 0
    assert capsys.readouterr().out.strip() == ids[0]


async def test_an_idempotent_job_id_still_holds_with_a_dedupe_key(
    svc: JobService, raw: redis.Redis
) -> None:
    await svc.submit_job("work", job_id="mine")
    assert await svc.submit_job("work", job_id="mine", dedupe_key="k") == "mine"
    assert job_count(raw, svc) == 1
    assert await svc.submit_job("work", dedupe_key="k") != "mine"  # the key stood for none


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"dedupe_key": "k", "dedupe_for": 0}, "dedupe_for"),
        ({"dedupe_key": "k", "dedupe_for": -1}, "dedupe_for"),
        ({"dedupe_key": "k", "dedupe_mode": "sometimes"}, "dedupe_mode"),
        ({"dedupe_key": "", "dedupe_for": 1}, "dedupe_key"),
        ({"dedupe_key": 42}, "dedupe_key"),
        ({"dedupe_for": 5}, "dedupe_key"),
        ({"dedupe_key": "k", "dedupe_mode": "throttle"}, "dedupe_for"),
        ({"dedupe_key": "k", "dedupe_mode": "debounce"}, "dedupe_for"),
        ({"dedupe_key": "k", "dedupe_mode": "debounce", "dedupe_for": 1, "delay": 5}, "delay"),
    ],
)
async def test_bad_dedupe_options_are_refused_naming_the_field_and_write_nothing(
    svc: JobService, raw: redis.Redis, options: dict[str, Any], field: str
) -> None:
    before = sorted(raw.scan_iter(match=f"{svc.queue.keys.base}*"))
    with pytest.raises(InvalidJobError) as caught:
        await svc.submit_job("work", **options)
    assert caught.value.field == field
    with pytest.raises(InvalidJobError) as caught:
        await svc.submit_many([{"handler": "work"}, {"handler": "work", **options}])
    assert caught.value.field == f"jobs[1].{field}"
    assert sorted(raw.scan_iter(match=f"{svc.queue.keys.base}*")) == before


def test_a_submit_without_a_dedupe_key_carries_no_dedupe() -> None:
    assert _codec.new_job("work").dedupe is None
    deduped = _codec.new_job("work", dedupe_key="k", dedupe_for=2.5, dedupe_mode="throttle")
    assert deduped.dedupe == _codec.Dedupe("k", "throttle", 2500)
