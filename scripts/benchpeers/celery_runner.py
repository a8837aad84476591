"""Celery with the Redis broker: producer via ``task.delay``, worker via ``celery worker``.

``acks_late`` is on (Celery's documented route to at-least-once); the broker's visibility
timeout is left at its default. There is no bulk *enqueue* API (``group`` is a workflow
primitive that still publishes one message per task), so enqueue-bulk is n/a.
"""

from __future__ import annotations

from celery import Celery

from . import _probe
from ._peer import Peer

CONCURRENCY = 16


def make_app(url: str) -> Celery:
    app = Celery("bench", broker=url)
    app.conf.update(task_acks_late=True, task_ignore_result=True, worker_hijack_root_logger=False)
    return app


app = make_app(_probe.redis_url())


@app.task(name="job")
def job(i: int, sleep: float) -> None:
    _probe.record_sync(i, sleep)


class CeleryPeer(Peer):
    name = "celery"
    dist = "celery"
    is_async = False
    settings = {
        "cli": f"celery -A benchpeers.celery_runner worker -P threads -c {CONCURRENCY} "
        "--without-gossip --without-mingle --without-heartbeat",
        "task_acks_late": True,
        "visibility_timeout": "default (3600)",
    }

    async def open(self) -> None:
        # A fresh app per measurement: kombu caches declared queues per connection, and the
        # Redis was just flushed.
        self.app = make_app(self.url)

    async def close(self) -> None:
        self.app.close()

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        self.app.send_task("job", (i, sleep))

    def worker_command(self) -> list[str]:
        return [
            "celery",
            "-A",
            "benchpeers.celery_runner",
            "worker",
            "-P",
            "threads",
            "-c",
            str(CONCURRENCY),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ]


PEER = CeleryPeer
