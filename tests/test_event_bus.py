"""The in-process event bus: events arrive in order, and a slow or hanging bus delays no job,
no outcome and no stop; a bus that falls behind loses events, counted and logged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from streamjobs import (
    AsyncWorkerPool,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
    _publisher,
)
from tests.conftest import FAST

pytestmark = pytest.mark.anyio


async def _noop(job: JobDefinition, progress: Any) -> str:
    await progress(1, 1, "done")
    return "ok"


@asynccontextmanager
async def _service(redis_url: str, queue_name: str, bus: Any) -> AsyncIterator[JobService]:
    queue = RedisJobQueue(redis_url, name=queue_name)
    pool = AsyncWorkerPool(queue, timings=FAST)
    async with JobService(queue=queue, worker_pool=pool, event_bus=bus) as svc:
        svc.register_handler("noop", _noop)
        yield svc


class HangingBus:
    def __init__(self) -> None:
        self.calls = 0

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        self.calls += 1
        await anyio.sleep_forever()


class SlowBus:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: list[tuple[str, str]] = []

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        await anyio.sleep(self.delay)
        self.seen.append((event_type, payload["job_id"]))


async def test_a_hanging_event_bus_delays_no_job_and_no_stop(
    redis_url: str, queue_name: str
) -> None:
    bus = HangingBus()
    with anyio.fail_after(30):  # bounds the service's own exit too, should the stop hang
        async with _service(redis_url, queue_name, bus) as svc:
            await svc.start_workers(4)
            ids = [await svc.submit_job("noop") for _ in range(40)]
            with anyio.fail_after(5):
                for job_id in ids:
                    result = await svc.wait_for_result(job_id)
                    assert result.status is JobStatus.COMPLETED
            with anyio.fail_after(_publisher.FLUSH_GRACE + 3):
                await svc.stop_workers()
            assert bus.calls == 1  # the first event is still hanging when the pool stops


async def test_a_slow_event_bus_loses_events_with_a_counted_warning_never_jobs(
    redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(_publisher, "BACKLOG", 4)
    bus = SlowBus(0.05)
    async with _service(redis_url, queue_name, bus) as svc:
        await svc.start_workers(2)
        with caplog.at_level(logging.WARNING, logger="streamjobs.events"):
            ids = [await svc.submit_job("noop") for _ in range(20)]
            with anyio.fail_after(5):
                for job_id in ids:
                    assert (await svc.wait_for_result(job_id)).result == "ok"
        dropped = svc.worker_pool.events_dropped
        assert 0 < dropped < 60  # three events a job: started, progress, completed
        assert len(bus.seen) + dropped <= 60
        assert any("event bus is falling behind" in r.message for r in caplog.records)
        assert (await svc.get_metrics())["queue"]["events_dropped"] == dropped
        await svc.stop_workers()


async def test_events_reach_the_bus_in_order_and_a_stop_lets_it_catch_up(
    redis_url: str, queue_name: str
) -> None:
    bus = SlowBus(0.01)
    async with _service(redis_url, queue_name, bus) as svc:
        await svc.start_workers(1)
        job_id = await svc.submit_job("noop")
        await svc.wait_for_result(job_id, timeout=5)
        await svc.stop_workers()
        kinds = [kind for kind, seen_id in bus.seen if seen_id == job_id]
        assert kinds == ["job.started", "job.progress", "job.completed"]
        assert svc.worker_pool.events_dropped == 0
