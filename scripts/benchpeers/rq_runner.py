"""RQ: producer via ``Queue.enqueue`` / ``Queue.enqueue_many``, worker via ``rq worker``.

The worker uses ``SimpleWorker`` (runs jobs in the worker process): the default worker forks
once per job, which is the right call for isolation but not for one process's best throughput.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis
from rq import Queue, Retry

from . import _probe
from ._peer import JOB_RETRIES, JOB_TIMEOUT_S, Peer

QUEUE = "bench"


def job(i: int, sleep: float) -> None:
    _probe.record_sync(i, sleep)


class RqPeer(Peer):
    name = "rq"
    dist = "rq"
    has_bulk = True
    is_async = False
    settings = {
        "cli": "rq worker --worker-class rq.worker.SimpleWorker",
        "job_timeout_s": JOB_TIMEOUT_S,
        "retry": JOB_RETRIES,
        "bulk": "Queue.enqueue_many",
    }

    async def open(self) -> None:
        self.conn = Redis.from_url(self.url)
        self.queue = Queue(QUEUE, connection=self.conn)

    async def close(self) -> None:
        self.conn.close()

    async def submit(self, i: int, sleep: float = 0.0) -> None:
        self.queue.enqueue(job, i, sleep, job_timeout=JOB_TIMEOUT_S, retry=Retry(JOB_RETRIES))

    async def submit_bulk(self, ids: Sequence[int]) -> None:
        data = [Queue.prepare_data(job, (i, 0.0), timeout=JOB_TIMEOUT_S) for i in ids]
        self.queue.enqueue_many(data)

    def worker_command(self) -> list[str]:
        return [
            "rq",
            "worker",
            "--url",
            self.url,
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--logging_level",
            "WARNING",
            QUEUE,
        ]


PEER = RqPeer
