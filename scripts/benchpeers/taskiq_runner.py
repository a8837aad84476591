"""taskiq + taskiq-redis: ``RedisStreamBroker`` (acks, redelivery), worker via ``taskiq worker``.

The producer calls ``broker.startup()`` as taskiq documents for clients; for this broker that
also creates the consumer group, so jobs queued before the worker starts are delivered to it.
"""

from __future__ import annotations

from taskiq_redis import RedisStreamBroker

from . import _probe
from ._peer import Peer

MAX_ASYNC_TASKS = 100

broker = RedisStreamBroker(url=_probe.redis_url())


@broker.task(task_name="job")
async def job(i: int, sleep: float) -> None:
    await _probe.record_async(i, sleep)


class TaskiqPeer(Peer):
    name = "taskiq"
    dist = "taskiq-redis"
    settings = {
        "cli": "taskiq worker benchpeers.taskiq_runner:broker --workers 1 "
        f"--max-async-tasks {MAX_ASYNC_TASKS}",
        "broker": "RedisStreamBroker",
        "idle_timeout_ms": "default (600000)",
        "result_backend": "none",
    }

    async def open(self) -> None:
        await broker.startup()

    async def close(self) -> None:
        await broker.shutdown()

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        await job.kiq(i, sleep)

    def worker_command(self) -> list[str]:
        return [
            "taskiq",
            "worker",
            "benchpeers.taskiq_runner:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(MAX_ASYNC_TASKS),
            "--log-level",
            "WARNING",
        ]


PEER = TaskiqPeer
