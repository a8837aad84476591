"""Redis itself misbehaving: a restart under load, entries that are not ours, running out of
memory, and a server too old for streamjobs."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

from streamjobs import JobService
from streamjobs._server_binary import redis_binary
from streamjobs.errors import QueueFullError, RedisVersionError, StreamJobsError
from tests._redis import RedisProcess
from tests.faults._harness import (
    KEYS,
    LEASE,
    QUEUE,
    ROOT,
    Combo,
    Workers,
    all_terminal,
    pool_of,
    statuses,
    submit,
    wait_until,
    work,
)
from tests.faults._invariants import check_invariants
from tests.faults._proxy import Proxy, old_version


def completed(client: redis.Redis, ids: list[str]) -> list[str]:
    return [i for i, s in zip(ids, statuses(client, ids)) if s == "COMPLETED"]


@pytest.mark.every_driver
def test_workers_ride_out_a_redis_restart_with_aof_always_and_lose_nothing(
    tmp_path: Path, ledger: redis.Redis, workers: Workers
) -> None:
    server = RedisProcess(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    try:
        client = server.client()
        ids = submit(server.url, work(800, seconds=0.02), via=workers.combo)
        procs = [workers.start(server.url, concurrency=10) for _ in range(2)]
        wait_until(lambda: len(completed(client, ids)) >= 200, 30, "200 jobs to complete")

        server.stop()  # SHUTDOWN while workers run
        runs_at_stop = {k: int(v) for k, v in ledger.hgetall("runs").items()}
        time.sleep(2 * LEASE)  # down for longer than a lease
        server.start()
        acknowledged = completed(client, ids)
        assert len(acknowledged) >= 200, "completed jobs did not survive the restart"

        wait_until(lambda: all_terminal(client, ids), 60, "every job to end after the restart")
        report = check_invariants(client, ledger, KEYS, ids, lease=LEASE)
        assert report.statuses["COMPLETED"] == len(ids)
        rerun = [i for i in acknowledged if report.runs[i] != runs_at_stop[i]]
        assert rerun == [], "jobs acknowledged before the restart ran again"
        for proc in procs:
            assert proc.poll() is None, workers.log(proc)
            assert "trying again in" in workers.log(proc)  # reconnected with backoff
    finally:
        server.kill()


def redis_cli(server: RedisProcess, *args: str) -> str:
    done = subprocess.run([redis_binary("redis-cli").path, "-p", str(server.port), *args],
                          capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
    return done.stdout.strip()


@pytest.mark.every_driver
def test_entries_that_are_not_ours_are_dead_lettered_raw_and_the_worker_keeps_working(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    before = submit(server.url, work(20, prefix="before"), via=workers.combo)
    critical, high, normal, _ = KEYS.streams
    no_id = redis_cli(server, "XADD", normal, "*", "foo", "bar")
    ghost = redis_cli(server, "XADD", critical, "*", "id", "ghost")
    bad_json = redis_cli(server, "XADD", high, "*", "id", "badjson")
    redis_cli(server, "HSET", KEYS.job("badjson"), "id", "badjson", "handler", "work",
              "args", "[not json", "priority", "20", "status", "PENDING", "entry", bad_json,
              "attempts", "0")  # fmt: skip
    no_handler = redis_cli(server, "XADD", normal, "*", "id", "nohandler")
    redis_cli(server, "HSET", KEYS.job("nohandler"), "id", "nohandler", "args", "[]",
              "priority", "10", "status", "PENDING", "entry", no_handler,
              "attempts", "0")  # fmt: skip

    proc = workers.start(server.url, concurrency=4)
    wait_until(lambda: all_terminal(client, before), 20, "the jobs queued before")
    after = submit(server.url, work(20, prefix="after"), via=workers.combo)
    wait_until(lambda: all_terminal(client, after), 20, "the jobs queued after")
    wait_until(lambda: client.xlen(KEYS.dead) == 4, 10, "four dead letters")

    dead = {f.get("raw_entry") or f["id"]: f for _, f in client.xrange(KEYS.dead)}
    assert dead[no_id]["reason"] == "undecodable entry: it carries no job id"
    assert (dead[no_id]["raw:foo"], dead[no_id]["raw_stream"]) == ("bar", normal)
    assert dead[ghost]["reason"] == "undecodable entry: no record for job ghost"
    assert dead[ghost]["raw:id"] == "ghost"
    assert dead["badjson"]["reason"] == "undecodable payload"
    assert dead["badjson"]["args"] == "[not json"  # the raw payload is kept
    assert dead["nohandler"]["reason"] == "undecodable payload"
    report = check_invariants(client, ledger, KEYS, before + after, lease=LEASE)
    assert report.statuses["COMPLETED"] == 40
    assert len(report.foreign_dead) == 2
    assert proc.poll() is None


def fill_until_refused(
    url: str, limit: int, via: Combo
) -> tuple[list[str], StreamJobsError, list[str]]:
    """Submit 16 KiB jobs through `via` until Redis refuses one; returns the accepted ids, the
    error, and the ids of the refused job and of a batch refused after it."""
    ballast = "x" * 16_384

    async def go() -> tuple[list[str], StreamJobsError, list[str]]:
        accepted: list[str] = []
        async with JobService(queue=via.queue(url)) as svc:
            for i in range(limit):
                try:
                    accepted.append(
                        await svc.submit_job("gated", (ballast,), job_id=f"fill{i}", timeout=60)
                    )
                except StreamJobsError as exc:
                    batch = [{"handler": "gated", "args": (ballast,), "job_id": f"batch{n}"}
                             for n in range(5)]  # fmt: skip
                    with pytest.raises(StreamJobsError):
                        await svc.submit_many(batch)
                    return accepted, exc, [f"fill{i}"] + [b["job_id"] for b in batch]
        raise AssertionError(f"Redis took {limit} jobs without running out of memory")

    return via.run(go)


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server with 4 MB of memory and no eviction."""
    proc = RedisProcess(tmp_path / "oom", "--maxmemory", "4mb",
                        "--maxmemory-policy", "noeviction").start()  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()


@pytest.mark.every_driver
def test_out_of_memory_refuses_a_submit_whole_and_keeps_what_was_queued(
    small_server: RedisProcess, ledger: redis.Redis, combo: Combo
) -> None:
    client = small_server.client()
    accepted, error, refused = fill_until_refused(small_server.url, 2000, combo)
    assert "maxmemory" in str(error)
    assert len(accepted) > 20
    assert statuses(client, refused) == [None] * len(refused)  # nothing half-written
    assert statuses(client, accepted) == ["PENDING"] * len(accepted)
    client.config_set("maxmemory", "0")  # lift the fault: reading metrics connects (see below)
    check_invariants(client, ledger, KEYS, accepted, lease=LEASE)


@pytest.mark.every_driver
def test_workers_running_when_redis_fills_up_finish_what_is_queued(
    small_server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = small_server.client()
    procs = [workers.start(small_server.url, concurrency=2) for _ in range(2)]
    for proc in procs:  # running before Redis fills up
        wait_until(lambda: pool_of(proc.pid, client), 10, "the workers to register")  # noqa: B023
    accepted, _, _ = fill_until_refused(small_server.url, 2000, workers.combo)

    ledger.set("gate", "open")  # the held jobs may finish now
    wait_until(lambda: all_terminal(client, accepted), 15, "the queued jobs to finish")
    assert [p.poll() for p in procs] == [None, None]
    client.config_set("maxmemory", "0")  # lift the fault: reading metrics connects (see below)
    report = check_invariants(client, ledger, KEYS, accepted, lease=LEASE)
    assert report.statuses["COMPLETED"] == len(accepted)


@pytest.mark.every_driver
def test_a_submit_refused_for_lack_of_memory_raises_queue_full(
    small_server: RedisProcess, ledger: redis.Redis, combo: Combo
) -> None:
    accepted, error, _ = fill_until_refused(small_server.url, 2000, combo)
    small_server.client().config_set("maxmemory", "0")
    check_invariants(small_server.client(), ledger, KEYS, accepted, lease=LEASE)
    assert isinstance(error, QueueFullError), repr(error)


@pytest.mark.anyio
@pytest.mark.every_driver
async def test_a_redis_older_than_6_2_is_refused_with_a_clear_message(
    server: RedisProcess, ledger: redis.Redis, combo: Combo
) -> None:
    async with anyio.create_task_group() as tg:
        proxy = Proxy(server.port, rewrite=old_version("6.0.9"))
        await tg.start(proxy.run)
        svc = JobService(queue=combo.queue(proxy.url))
        with anyio.fail_after(10), pytest.raises(RedisVersionError) as refused:
            await svc.initialize()
        assert "too old: streamjobs needs Redis 6.2 or newer" in str(refused.value)
        assert "Redis 6.0.9" in str(refused.value)

        cmd = [sys.executable, "-m", "streamjobs", "worker", "tests.faults.app:service",
               "--redis-url", proxy.url, "--queue", QUEUE, *combo.worker_args()]  # fmt: skip
        with anyio.fail_after(30):
            done = await anyio.run_process(cmd, cwd=ROOT, check=False)
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == 1
        assert len(lines) == 1 and "too old" in lines[0], lines
        proxy.close()

    assert server.client().keys("*") == []  # refused before writing anything
    check = functools.partial(check_invariants, lease=LEASE)
    await anyio.to_thread.run_sync(check, server.client(), ledger, KEYS, [])
    async with JobService(queue=combo.queue(server.url)) as real:
        assert await real.get_job_status("none") is None  # the real server is accepted


@pytest.mark.every_driver
def test_a_worker_started_while_redis_is_out_of_memory_drains_the_queue(
    small_server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = small_server.client()
    ledger.set("gate", "open")
    accepted, _, _ = fill_until_refused(small_server.url, 2000, workers.combo)
    proc = workers.start(small_server.url, concurrency=4)
    wait_until(lambda: all_terminal(client, accepted) or proc.poll() is not None, 30, "a drain")
    assert proc.poll() is None, workers.log(proc)
    client.config_set("maxmemory", "0")
    report = check_invariants(client, ledger, KEYS, accepted, lease=LEASE)
    assert report.statuses["COMPLETED"] == len(accepted)
