"""A Redis that stops answering (a stalled connection) fails a command within its deadline,
with every driver and event loop, instead of hanging the caller."""

from __future__ import annotations

import anyio
import pytest

from streamjobs import JobService, JobStatus, RedisJobQueue
from streamjobs._drivers import coredis_driver, redis_py, resp
from streamjobs.errors import RedisUnavailableError
from tests._redis import RedisProcess
from tests.faults._harness import Combo
from tests.faults._proxy import Proxy

pytestmark = pytest.mark.anyio


@pytest.mark.every_driver
async def test_a_stalled_redis_fails_a_command_within_its_deadline(
    combo: Combo, redis_process: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (resp, redis_py, coredis_driver):
        monkeypatch.setattr(module, "COMMAND_DEADLINE", 0.5)

    proxy = Proxy(redis_process.port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.run)
        queue = RedisJobQueue(proxy.url, name="stalled", driver=combo.driver)
        async with JobService(queue=queue) as svc:
            job_id = await svc.submit_job("x")
            proxy.stall()
            with anyio.fail_after(5), pytest.raises(RedisUnavailableError):
                await svc.get_job_status(job_id)
            proxy.resume()
            assert await svc.get_job_status(job_id) is JobStatus.PENDING
        proxy.close()
