"""arq: producer via ``create_pool().enqueue_job``, worker via the ``arq`` CLI."""

from __future__ import annotations

from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import func

from . import _probe
from ._peer import JOB_RETRIES, JOB_TIMEOUT_S, Peer

MAX_JOBS = 100
# Per-job INFO lines cost throughput; every peer runs with per-job logging off.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"arq": {"level": "WARNING"}},
}


async def job(ctx: dict[str, Any], i: int, sleep: float) -> None:
    await _probe.record_async(i, sleep)


class WorkerSettings:
    """Read by ``arq benchpeers.arq_runner.WorkerSettings``.

    The function's ``timeout`` also sets arq's in-progress lock (timeout + 10 s), which is what
    lets another worker pick up the job of a killed one.
    """

    functions = [func(job, name="job", timeout=JOB_TIMEOUT_S, max_tries=JOB_RETRIES + 1)]
    redis_settings = RedisSettings.from_dsn(_probe.redis_url())
    max_jobs = MAX_JOBS


class ArqPeer(Peer):
    name = "arq"
    dist = "arq"
    settings = {
        "cli": "arq benchpeers.arq_runner.WorkerSettings --custom-log-dict ...LOG_CONFIG",
        "poll_delay_s": "default (0.5)",
        "max_jobs": MAX_JOBS,
        "function_timeout_s": JOB_TIMEOUT_S,
        "max_tries": JOB_RETRIES + 1,
    }

    async def open(self) -> None:
        self.pool: ArqRedis = await create_pool(RedisSettings.from_dsn(self.url))

    async def close(self) -> None:
        await self.pool.aclose()

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        await self.pool.enqueue_job("job", i, sleep)

    def worker_command(self) -> list[str]:
        return [
            "arq",
            "benchpeers.arq_runner.WorkerSettings",
            "--custom-log-dict",
            "benchpeers.arq_runner.LOG_CONFIG",
        ]


PEER = ArqPeer
