"""Huey with ``RedisHuey``: producer by calling the task, worker via ``huey_consumer``.

Huey has no bulk enqueue API (``task.map`` enqueues one by one), so enqueue-bulk is n/a.
"""

from __future__ import annotations

from huey import RedisHuey

from . import _probe
from ._peer import JOB_RETRIES, Peer

WORKERS = 16

huey = RedisHuey("bench", url=_probe.redis_url())


@huey.task(retries=JOB_RETRIES, name="job")
def job(i: int, sleep: float) -> None:
    _probe.record_sync(i, sleep)


class HueyPeer(Peer):
    name = "huey"
    dist = "huey"
    is_async = False
    settings = {
        "cli": f"huey_consumer benchpeers.huey_runner.huey -k thread -w {WORKERS}",
        "retries": JOB_RETRIES,
        "blocking": "default (True)",
    }

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        job(i, sleep)

    def worker_command(self) -> list[str]:
        return [
            "huey_consumer",
            "benchpeers.huey_runner.huey",
            "-k",
            "thread",
            "-w",
            str(WORKERS),
            "-q",
        ]


PEER = HueyPeer
