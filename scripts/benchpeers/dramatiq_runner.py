"""Dramatiq with ``RedisBroker``: producer via ``actor.send``, worker via the ``dramatiq`` CLI.

``group`` is a workflow primitive (one message per job), so enqueue-bulk is n/a.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from . import _probe
from ._peer import JOB_RETRIES, JOB_TIMEOUT_S, Peer

THREADS = 16

broker = RedisBroker(url=_probe.redis_url())
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="job", max_retries=JOB_RETRIES, time_limit=JOB_TIMEOUT_S * 1000)
def job(i: int, sleep: float) -> None:
    _probe.record_sync(i, sleep)


class DramatiqPeer(Peer):
    name = "dramatiq"
    dist = "dramatiq"
    is_async = False
    settings = {
        "cli": f"dramatiq benchpeers.dramatiq_runner --processes 1 --threads {THREADS}",
        "max_retries": JOB_RETRIES,
        "time_limit_ms": JOB_TIMEOUT_S * 1000,
        "heartbeat_timeout": "default",
    }

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        job.send(i, sleep)

    def worker_command(self) -> list[str]:
        return [
            "dramatiq",
            "benchpeers.dramatiq_runner",
            "--processes",
            "1",
            "--threads",
            str(THREADS),
        ]


PEER = DramatiqPeer
