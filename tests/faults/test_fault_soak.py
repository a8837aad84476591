"""A soak: many jobs through two worker processes with results expiring; afterwards Redis
holds what it held before (no leaked records, trimmed streams), within a small margin."""

from __future__ import annotations

import anyio
import pytest
import redis

from streamjobs import JobService, RedisJobQueue
from tests._redis import RedisProcess
from tests.faults import app
from tests.faults._harness import KEYS, LEASE, QUEUE, Workers, submit, wait_until, work
from tests.faults._invariants import check_invariants

SOAK_ENV = {app.RESULT_TTL_ENV: "1", app.EVENTS_MAXLEN_ENV: "1000"}
MARGIN = 256 * 1024  # bytes of used_memory the run may leave behind


def completed_total(url: str) -> int:
    async def read() -> int:
        async with JobService(queue=RedisJobQueue(url, name=QUEUE)) as svc:
            return int((await svc.get_metrics())["queue"]["completed"])

    return anyio.run(read)


def job_records(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(match=f"{KEYS.job_prefix}*", count=5000))


def settled_memory(client: redis.Redis) -> int:
    """used_memory once no job record is left (results expire after 1 s)."""
    wait_until(lambda: job_records(client) == 0, 60, "every result to expire", every=0.5)
    return int(client.info("memory")["used_memory"])


def run_through(
    workers: Workers, url: str, client: redis.Redis, specs: list[dict[str, object]], done: int
) -> int:
    """Submit `specs` and wait until the completed counter has grown by that many."""
    for start in range(0, len(specs), 5000):
        submit(url, specs[start : start + 5000], via=workers.combo, batch=1000)
    goal = done + len(specs)
    wait_until(lambda: completed_total(url) >= goal, len(specs) / 200 + 30, "the soak", 0.5)
    return goal


@pytest.mark.parametrize(
    "jobs",
    [5000, pytest.param(100_000, marks=[pytest.mark.slow, pytest.mark.timeout(1200)])],
)
def test_memory_returns_to_its_starting_point_after_a_soak_with_expiring_results(
    jobs: int, server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    procs = [workers.start(server.url, concurrency=20, env=SOAK_ENV) for _ in range(2)]
    # warm up: scripts loaded, groups made, the events stream at its cap, pools registered
    warm = work(1500, prefix="warm")
    done = run_through(workers, server.url, client, warm, 0)
    before, keys_before = settled_memory(client), client.dbsize()

    soak = work(jobs)
    done = run_through(workers, server.url, client, soak, done)
    after = settled_memory(client)

    assert client.dbsize() == keys_before, sorted(client.keys("*"))
    assert [client.xlen(s) for s in KEYS.streams] == [0, 0, 0, 0]
    assert client.xlen(KEYS.events) <= 1100
    assert client.zcard(KEYS.delayed) == 0
    assert after - before <= MARGIN, f"used_memory grew by {after - before} bytes"
    ids = [str(spec["job_id"]) for spec in warm + soak]
    report = check_invariants(client, ledger, KEYS, ids, lease=LEASE, expired_ok=True)
    assert report.metrics["queue"]["completed"] == done
    assert ledger.hlen("runs") == jobs + len(warm)
    assert [p.poll() for p in procs] == [None, None]
    print(f"soak of {jobs}: used_memory {before} -> {after}")
