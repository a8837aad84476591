"""Connections between workers, submitters and Redis cut or stalled by a TCP proxy: nothing
is lost, and nothing acknowledged runs again."""

from __future__ import annotations

import functools
import threading
import time

import anyio
import pytest
import redis

from streamjobs import JobService
from streamjobs.errors import RedisUnavailableError
from tests._redis import RedisProcess
from tests.faults._harness import (
    KEYS,
    LEASE,
    Combo,
    Workers,
    all_terminal,
    pool_of,
    submit,
    wait_until,
    work,
)
from tests.faults._invariants import check_invariants
from tests.faults._proxy import ProxyThread, proxy_thread


def inject(proxy: ProxyThread, stop: threading.Event, every: float, stall: float) -> None:
    """Cut connections mid-request, mid-reply or outright, and stall them, in turn, every
    `every` seconds until `stop` (at most 200 faults)."""
    for n in range(200):
        if stop.wait(every):
            return
        kind = n % 4
        if kind == 0:
            proxy.cut_midway("request")
        elif kind == 1:
            proxy.cut_midway("reply")
        elif kind == 2:
            proxy.cut_all()
        else:
            proxy.stall()
            stop.wait(stall)
            proxy.resume()


@pytest.mark.every_driver
def test_workers_and_submitters_recover_from_cut_and_stalled_connections(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    with proxy_thread(server.port) as proxy:
        procs = [workers.start(proxy.url, concurrency=10) for _ in range(2)]
        for proc in procs:
            wait_until(lambda: pool_of(proc.pid, client), 15, "the workers")  # noqa: B023
        stop = threading.Event()
        faults = threading.Thread(target=inject, args=(proxy, stop, 0.25, 0.3), daemon=True)
        faults.start()
        try:
            specs = work(1500, seconds=0.01)
            ids: list[str] = []
            for start in range(0, len(specs), 100):
                batch = specs[start : start + 100]
                ids += submit(proxy.url, batch, via=workers.combo, retry_for=20)
            proxy.stall()  # longer than a lease: renewals and reclaims queue up together
            time.sleep(1.5 * LEASE)
            proxy.resume()
            wait_until(lambda: all_terminal(client, ids), 60, "every job to end")
        finally:
            stop.set()
            faults.join(10)
        assert proxy.cuts >= 10, "too few connections were cut to prove anything"
        report = check_invariants(client, ledger, KEYS, ids, lease=LEASE)
        assert len(ids) == len(set(ids)) == 1500
        assert report.statuses["COMPLETED"] == 1500
        assert [p.poll() for p in procs] == [None, None]


def test_a_lost_start_reply_is_not_counted_as_a_worker_crash(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    with proxy_thread(server.port) as proxy:
        proc = workers.start(proxy.url, concurrency=1)
        wait_until(lambda: pool_of(proc.pid, client), 15, "the worker")
        proxy.cut_replies_with((b"unlucky", b"RUNNING"), 3)  # replies that hand the job over
        spec = {"handler": "work", "args": (0,), "job_id": "unlucky"}
        ids = submit(server.url, [spec], via=workers.combo)
        wait_until(lambda: all_terminal(client, ids), 8 * LEASE + 10, "the job to end")
        assert proxy.cuts == 3
        assert proc.poll() is None  # no worker died
        report = check_invariants(client, ledger, KEYS, ids, lease=LEASE)
        assert report.records["unlucky"].get("crashes") is None, report.records["unlucky"]
        assert report.status("unlucky") == "COMPLETED"


@pytest.mark.every_driver
def test_a_submitter_inside_async_with_sees_redis_unavailable_itself(
    server: RedisProcess, ledger: redis.Redis, combo: Combo
) -> None:
    async def go(proxy: ProxyThread) -> None:
        async with JobService(queue=combo.queue(proxy.url)) as svc:
            proxy.cut_replies_with((b"*1\r\n:1\r\n",), 100)  # every enqueue reply is lost
            with anyio.fail_after(30):
                await svc.submit_job("work", (0,), job_id="doomed")

    with proxy_thread(server.port) as proxy, pytest.raises(RedisUnavailableError):
        combo.run(functools.partial(go, proxy))
    check_invariants(server.client(), ledger, KEYS, ["doomed"], lease=LEASE)
