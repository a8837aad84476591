"""Cancelling a job: before it starts it never runs; while it runs, it ends CANCELLED at once,
its worker stops the handler within a second (a plain def handler through its progress
callback), it is never retried, and its late result is refused. From any process, and
honoured when the pool that held it died. On every event loop and driver."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
import redis

from streamjobs import (
    AsyncWorkerPool,
    CancelOutcome,
    JobCancelled,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
)
from streamjobs.cli import main
from streamjobs.redis_queue import LeaseLostError
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests.conftest import FAST

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

pytestmark = pytest.mark.anyio


class Bus:
    """An event bus that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.append((event_type, payload))


@pytest.fixture
async def svc(redis_url: str, queue_name: str, combo: tuple[str, str]) -> AsyncIterator[JobService]:
    """A connected service on the combo's driver, with fast leases and an event bus."""
    queue = RedisJobQueue(redis_url, name=queue_name, driver=combo[1])
    pool = AsyncWorkerPool(queue, timings=FAST, event_bus=Bus())
    async with JobService(queue=queue, worker_pool=pool) as service:
        yield service


async def until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Look every 10 ms until `check()` holds; fail past `within` seconds."""
    with anyio.fail_after(within):
        for _ in range(int(within * 100) + 1):
            if await check():
                return
            await anyio.sleep(0.01)
    raise AssertionError(f"not so within {within}s")


async def status_becomes(svc: JobService, job_id: str, status: JobStatus) -> None:
    async def check() -> bool:
        return await svc.get_job_status(job_id) is status

    await until(check, 10)


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check


def cancelled_events(raw: redis.Redis, svc: JobService, job_id: str) -> list[dict[str, str]]:
    entries = raw.xrange(svc.queue.keys.events)
    return [f for _, f in entries if f["type"] == "job.cancelled" and f["job_id"] == job_id]


async def test_a_running_async_handler_is_stopped_within_a_second_and_ends_cancelled(
    svc: JobService, raw: redis.Redis
) -> None:
    started, stopped = anyio.Event(), anyio.Event()
    runs = []

    async def slow(job: JobDefinition, progress: Any) -> str:
        runs.append(job.id)
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            stopped.set()
        return "finished"

    svc.register_handler("slow", slow)
    await svc.start_workers(2)
    job_id = await svc.submit_job("slow", max_retries=3, retry_delay=0)
    with anyio.fail_after(10):
        await started.wait()
    outcome = await svc.cancel_job(job_id)
    assert outcome is CancelOutcome.REQUESTED and outcome
    with anyio.fail_after(1):
        await stopped.wait()
    result = await svc.wait_for_result(job_id, timeout=1)
    assert result.status is JobStatus.CANCELLED and result.result is None
    await anyio.sleep(0.5)  # room for a retry that must not come
    assert runs == [job_id]
    assert (await svc.get_metrics())["queue"]["cancelled"] == 1
    assert [e["from"] for e in cancelled_events(raw, svc, job_id)] == ["RUNNING"]
    bus = svc.worker_pool.event_bus
    assert isinstance(bus, Bus)
    await until(holds(lambda: any(kind == "job.cancelled" for kind, _ in bus.events)), 5)


async def test_a_handler_that_finishes_after_its_cancel_has_its_result_refused(
    svc: JobService,
) -> None:
    started = anyio.Event()
    finished = []

    async def stubborn(job: JobDefinition, progress: Any) -> str:
        started.set()
        with anyio.CancelScope(shield=True):  # it will not stop: it returns a result late
            await anyio.sleep(0.3)
        finished.append(job.id)
        return "too late"

    svc.register_handler("stubborn", stubborn)
    await svc.start_workers(1)
    job_id = await svc.submit_job("stubborn")
    with anyio.fail_after(10):
        await started.wait()
    assert await svc.cancel_job(job_id) is CancelOutcome.REQUESTED
    await until(holds(lambda: bool(finished)), 5)
    await anyio.sleep(0.2)
    result = await svc.get_job_result(job_id)
    assert result is not None and result.status is JobStatus.CANCELLED and result.result is None


async def test_the_attempt_of_a_cancelled_job_can_settle_nothing(svc: JobService) -> None:
    job_id = await svc.submit_job("anything")
    [d] = await svc.queue.start("a-pool", 1)
    assert await svc.cancel_job(job_id) is CancelOutcome.REQUESTED
    with pytest.raises(LeaseLostError):
        await svc.queue.complete(d, '"late"')
    with pytest.raises(LeaseLostError):
        await svc.queue.retry(d, "boom", 0)
    assert not await svc.queue.progress(d, 1, 2, "late")
    result = await svc.get_job_result(job_id)
    assert result is not None and result.status is JobStatus.CANCELLED and result.result is None


async def test_a_plain_def_handler_gets_job_cancelled_from_its_progress_callback(
    svc: JobService,
) -> None:
    started = threading.Event()
    seen: list[str] = []

    def crunch(job: JobDefinition, progress: Any) -> str:
        started.set()
        try:
            for step in range(500):  # bounded: 10 s at most
                progress(step, 500, "crunching")
                time.sleep(0.02)
        except JobCancelled as exc:
            seen.append(str(exc))
            raise
        return "done"

    svc.register_handler("crunch", crunch)
    await svc.start_workers(1)
    job_id = await svc.submit_job("crunch")
    with anyio.fail_after(10):
        await anyio.to_thread.run_sync(started.wait, 10)
    assert await svc.cancel_job(job_id) is CancelOutcome.REQUESTED
    t0 = time.monotonic()
    await until(holds(lambda: bool(seen)), 1)
    assert time.monotonic() - t0 < 1
    assert seen == [f"job {job_id} was cancelled"]
    result = await svc.get_job_result(job_id)
    assert result is not None and result.status is JobStatus.CANCELLED
    # the worker waited for its thread: it is free again for the next job
    svc.register_handler("echo", lambda job, progress: job.args[0])
    echoed = await svc.wait_for_result(await svc.submit_job("echo", args=(7,)), timeout=5)
    assert echoed.result == 7


async def test_a_job_cancelled_from_another_process_stops(svc: JobService, redis_url: str) -> None:
    started, stopped = anyio.Event(), anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> None:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            stopped.set()

    svc.register_handler("slow", slow)
    await svc.start_workers(1)
    job_id = await svc.submit_job("slow")
    with anyio.fail_after(10):
        await started.wait()
    code = (
        "import sys; from streamjobs.sync import SyncJobClient\n"
        "with SyncJobClient(sys.argv[1], name=sys.argv[2]) as c: print(c.cancel_job(sys.argv[3]))"
    )
    argv = [sys.executable, "-c", code, redis_url, svc.queue.keys.name, job_id]
    with anyio.fail_after(20):
        done = await anyio.run_process(argv, stderr=subprocess.STDOUT)
    assert done.stdout.decode().strip() == "REQUESTED"
    with anyio.fail_after(1):
        await stopped.wait()
    assert await svc.get_job_status(job_id) is JobStatus.CANCELLED


async def test_a_job_whose_pool_died_while_running_it_stays_cancelled(
    svc: JobService, raw: redis.Redis
) -> None:
    runs = []

    async def record(job: JobDefinition, progress: Any) -> None:
        runs.append(job.id)

    job_id = await svc.submit_job("record")
    await svc.queue.start("a-pool-that-died", 1, lease_ms=200)  # started, then never heard of
    assert await svc.cancel_job(job_id) is CancelOutcome.REQUESTED
    control = svc.queue.keys.control("a-pool-that-died")
    assert raw.lrange(control, 0, -1) == [job_id] and raw.pttl(control) > 0  # it will expire
    svc.register_handler("record", record)
    await svc.start_workers(1)  # reclaims lapsed leases every 0.2 s
    await anyio.sleep(1.5)
    assert runs == []
    assert await svc.get_job_status(job_id) is JobStatus.CANCELLED
    assert all(raw.xpending(stream, "workers")["pending"] == 0 for stream in svc.queue.keys.streams)


async def test_cancel_job_says_what_it_did_in_every_state(svc: JobService) -> None:
    started = anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> None:
        started.set()
        await anyio.sleep(30)

    async def flaky(job: JobDefinition, progress: Any) -> None:
        raise RuntimeError("try again later")

    pending = await svc.submit_job("slow")
    scheduled = await svc.submit_job("slow", delay=60)
    assert await svc.cancel_job(pending) is CancelOutcome.CANCELLED
    assert await svc.cancel_job(scheduled) is CancelOutcome.CANCELLED
    svc.register_handler("slow", slow)
    svc.register_handler("flaky", flaky)
    await svc.start_workers(2)
    retrying = await svc.submit_job("flaky", retry_delay=60)
    running = await svc.submit_job("slow")
    await status_becomes(svc, retrying, JobStatus.RETRYING)
    with anyio.fail_after(10):
        await started.wait()
    assert await svc.cancel_job(retrying) is CancelOutcome.CANCELLED
    assert await svc.cancel_job(running) is CancelOutcome.REQUESTED
    for job_id in (running, "never-submitted"):
        outcome = await svc.cancel_job(job_id)
        assert outcome is CancelOutcome.NOTHING and not outcome
    for job_id in (pending, scheduled, retrying, running):
        assert await svc.get_job_status(job_id) is JobStatus.CANCELLED
    assert (await svc.get_metrics())["queue"]["cancelled"] == 4
    assert (await svc.get_metrics())["queue"]["retrying"] == 0


async def test_the_sync_client_and_the_cli_say_what_cancelling_did(
    svc: JobService, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = svc.queue.keys.name
    first, second = await svc.submit_job("slow"), await svc.submit_job("slow")
    with SyncJobClient(redis_url, name=name) as client:
        assert await anyio.to_thread.run_sync(client.cancel_job, first) is CancelOutcome.CANCELLED
        assert await anyio.to_thread.run_sync(client.cancel_job, first) is CancelOutcome.NOTHING
    cli = ["jobs", "cancel", "--redis-url", redis_url, "--queue", name, "--json"]
    assert await anyio.to_thread.run_sync(main, [*cli, second]) == 0
    assert '"outcome":"CANCELLED"' in capsys.readouterr().out.replace(" ", "")
    assert await anyio.to_thread.run_sync(main, [*cli, second]) == 1
    assert "nothing to cancel" in capsys.readouterr().err


async def test_a_pool_that_never_hears_of_the_cancel_still_stops_the_job_by_its_lease(
    svc: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def deaf(pool_id: str, timeout: float, *, partition: int = 0) -> None:  # never answers
        await anyio.sleep(timeout)

    monkeypatch.setattr(svc.queue, "wait_for_cancel", deaf)
    started, stopped = anyio.Event(), anyio.Event()

    async def slow(job: JobDefinition, progress: Any) -> str:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            stopped.set()
        return "finished"

    svc.register_handler("slow", slow)
    await svc.start_workers(1)
    job_id = await svc.submit_job("slow")
    with anyio.fail_after(10):
        await started.wait()
    assert await svc.cancel_job(job_id) is CancelOutcome.REQUESTED
    with anyio.fail_after(FAST.lease * 2):  # the lease renewal finds the entry gone
        await stopped.wait()
    result = await svc.wait_for_result(job_id, timeout=1)
    assert result.status is JobStatus.CANCELLED and result.result is None
