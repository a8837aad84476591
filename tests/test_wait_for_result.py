"""Waiting for a result: an id with no record is reported at once, never waited on forever."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from streamjobs import (
    AsyncWorkerPool,
    JobDefinition,
    JobNotFoundError,
    JobService,
    JobStatus,
    RedisJobQueue,
    StreamJobsError,
)
from streamjobs.sync import SyncJobClient
from tests.conftest import FAST

pytestmark = pytest.mark.anyio

#: Results expire this long after the job ends (seconds).
SHORT_TTL = 0.3


async def echo(job: JobDefinition, progress: Any) -> Any:
    return list(job.args)


@pytest.fixture
async def short_lived(redis_url: str, queue_name: str) -> AsyncIterator[JobService]:
    """A service whose results expire 0.3 s after the job ends, with one worker running."""
    queue = RedisJobQueue(redis_url, name=queue_name, result_ttl=SHORT_TTL)
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    service.register_handler("echo", echo)
    async with service:
        await service.start_workers(1)
        yield service


async def _until_expired(service: JobService, job_id: str) -> None:
    """Wait (at most 5 s) until the job's record has expired."""
    for _ in range(100):
        if await service.get_job_status(job_id) is None:
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"the record of {job_id} did not expire")


@pytest.fixture
def client(redis_url: str, queue_name: str) -> Iterator[SyncJobClient]:
    with SyncJobClient(redis_url, name=queue_name, timings=FAST) as c:
        yield c


async def test_waiting_for_an_id_never_submitted_raises_job_not_found_at_once(
    svc: JobService,
) -> None:
    with anyio.fail_after(3), pytest.raises(JobNotFoundError, match="never-submitted") as info:
        await svc.wait_for_result("never-submitted")
    assert isinstance(info.value, StreamJobsError) and isinstance(info.value, LookupError)
    assert info.value.job_id == "never-submitted"


async def test_waiting_for_an_expired_result_raises_job_not_found(
    short_lived: JobService,
) -> None:
    job_id = await short_lived.submit_job("echo", args=(1,))
    result = await short_lived.wait_for_result(job_id, timeout=10)
    assert result.status is JobStatus.COMPLETED
    await _until_expired(short_lived, job_id)
    with anyio.fail_after(3), pytest.raises(JobNotFoundError):
        await short_lived.wait_for_result(job_id)


async def test_a_job_submitted_before_the_wait_is_waited_for_normally(
    short_lived: JobService,
) -> None:
    job_id = await short_lived.submit_job("echo", args=(2,), delay=0.3)
    result = await short_lived.wait_for_result(job_id, timeout=10)
    assert result.result == [2]


def test_the_sync_client_raises_job_not_found_for_an_id_never_submitted(
    client: SyncJobClient,
) -> None:
    with pytest.raises(JobNotFoundError, match="nobody"):
        client.wait_for_result("nobody", timeout=3)  # a TimeoutError here: it waited


async def test_the_sync_client_raises_job_not_found_for_an_expired_result(
    short_lived: JobService, client: SyncJobClient
) -> None:
    job_id = client.submit_job("echo", (3,))
    result = await anyio.to_thread.run_sync(lambda: client.wait_for_result(job_id, timeout=10))
    assert result.result == [3]
    await _until_expired(short_lived, job_id)
    with pytest.raises(JobNotFoundError):
        await anyio.to_thread.run_sync(lambda: client.wait_for_result(job_id, timeout=3))
