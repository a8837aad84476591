"""The worker app of the fault suite: `python -m streamjobs worker tests.faults.app:service`.

Every handler records each run in a ledger: a second redis-server that no scenario faults, so
"ran at least once" and "ran twice" stay observable whatever happens to the queue's Redis.
The ledger holds two hashes: `runs` (job id -> handler runs) and `attempt` (job id -> the
highest attempt number a run had). Settings come from the environment (see `service`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio
import redis

from streamjobs import AsyncWorkerPool, JobDefinition, JobService, RedisJobQueue, Timings

LEDGER_ENV = "FAULTS_LEDGER_URL"
RESULT_TTL_ENV = "FAULTS_RESULT_TTL"
EVENTS_MAXLEN_ENV = "FAULTS_EVENTS_MAXLEN"

#: One atomic ledger write per run: count it and keep the highest attempt number seen.
_RECORD_RUN = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) > seen then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return n
"""

_ledger: Any = None


def ledger() -> redis.Redis:
    """This process's client for the ledger Redis."""
    global _ledger
    if _ledger is None:
        client = redis.Redis.from_url(
            os.environ[LEDGER_ENV], decode_responses=True, socket_timeout=5
        )
        _ledger = (client, client.register_script(_RECORD_RUN))
    return _ledger[0]  # type: ignore[no-any-return]


def record_run(job: JobDefinition) -> int:
    """Count this run in the ledger; returns how many runs the job has had, this one included."""
    ledger()
    return int(_ledger[1](keys=["runs", "attempt"], args=[job.id, job.attempts]))


def _result(job: JobDefinition, runs: int) -> dict[str, Any]:
    return {"pid": os.getpid(), "attempt": job.attempts, "runs": runs}


async def work(job: JobDefinition, progress: Any) -> dict[str, Any]:
    """A short job: args = (seconds to sleep,)."""
    runs = record_run(job)
    await anyio.sleep(float(job.args[0]) if job.args else 0)
    return _result(job, runs)


async def crash(job: JobDefinition, progress: Any) -> None:
    """Kills its worker process, every time."""
    record_run(job)
    os._exit(3)


async def block(job: JobDefinition, progress: Any) -> dict[str, Any]:
    """Blocks the event loop with time.sleep(args[0]); only on its first run when args[1]."""
    runs = record_run(job)
    if runs == 1 or not job.args[1]:
        time.sleep(float(job.args[0]))  # noqa: ASYNC251 - stalls the loop on purpose
    return _result(job, runs)


async def gated(job: JobDefinition, progress: Any) -> dict[str, Any]:
    """Waits (up to 60 s) until the ledger key `gate` exists; args are ballast."""
    runs = record_run(job)
    with anyio.move_on_after(60):
        while not ledger().exists("gate"):  # noqa: ASYNC110 - a key in Redis, no event
            await anyio.sleep(0.05)
    return _result(job, runs)


def service() -> JobService:
    """The app: the queue's Redis, name, result TTL and events length from the environment."""
    queue = RedisJobQueue(
        os.environ.get("REDIS_URL"),
        result_ttl=float(os.environ.get(RESULT_TTL_ENV, "86400")),
        events_maxlen=int(os.environ.get(EVENTS_MAXLEN_ENV, "10000")),
    )
    pool = AsyncWorkerPool(queue, timings=Timings(heartbeat=0.5))
    svc = JobService(queue=queue, worker_pool=pool)
    for name, fn in (("work", work), ("crash", crash), ("block", block), ("gated", gated)):
        svc.register_handler(name, fn)
    return svc
