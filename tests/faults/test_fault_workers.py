"""Worker processes that die, stall or block their event loop, against a real redis-server:
their jobs are taken back once the lease lapses, never while the lease is alive, and a stale
worker can never overwrite the outcome of the worker that took its job over."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from tests._redis import RedisProcess
from tests.faults._harness import (
    KEYS,
    LEASE,
    Workers,
    all_terminal,
    pool_of,
    statuses,
    submit,
    wait_until,
    work,
)
from tests.faults._invariants import check_invariants


def held_by(client: redis.Redis, consumer: str) -> dict[str, str]:
    """Job id -> entry, for the entries `consumer` holds (delivered, not acknowledged)."""
    held = {}
    for stream in KEYS.streams:
        for p in client.xpending_range(stream, "workers", "-", "+", 1000, consumername=consumer):
            entry = client.xrange(stream, p["message_id"], p["message_id"])
            if entry:
                held[entry[0][1]["id"]] = p["message_id"]
    return held


def server_ms(client: redis.Redis) -> int:
    sec, usec = client.time()
    return int(sec * 1000 + usec // 1000)


def count(client: redis.Redis, ids: list[str], status: str) -> int:
    return sum(1 for s in statuses(client, ids) if s == status)


@pytest.mark.every_driver
def test_jobs_of_a_worker_killed_mid_job_are_taken_back_after_the_lease_and_all_complete(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    ids = submit(server.url, work(3000, seconds=0.01), via=workers.combo)
    killed = workers.start(server.url, concurrency=20)
    survivor = workers.start(server.url, concurrency=20)
    wait_until(lambda: count(client, ids, "COMPLETED") >= 600, 60, "600 jobs to complete")
    consumer = wait_until(lambda: pool_of(killed.pid, client), 10, "the pool to register")
    wait_until(lambda: held_by(client, consumer), 10, "the doomed worker to hold jobs")

    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(10)
    killed_at = server_ms(client)
    orphans = held_by(client, consumer)
    assert orphans, "the killed worker held no job: the kill proved nothing"

    wait_until(lambda: all_terminal(client, ids), 90, "every job to end")
    report = check_invariants(client, ledger, KEYS, ids, lease=LEASE)
    assert report.statuses["COMPLETED"] == len(ids)
    for job_id in orphans:
        record = report.records[job_id]
        assert record["owner"] != consumer, f"{job_id} was never taken back"
        taken_back_after = int(record["started_at"]) - killed_at
        assert LEASE * 1000 / 2 <= taken_back_after <= 10_000, (job_id, taken_back_after)
        if report.runs.get(job_id, 0) > 1:  # it was running, not only delivered
            assert record["crashes"] == "1", record
    assert any(report.runs.get(job_id, 0) > 1 for job_id in orphans), "no job died mid-run"
    assert workers.terminate(survivor) == 0


def completions(client: redis.Redis, job_id: str) -> int:
    events = client.xrange(KEYS.events)
    return sum(1 for _, f in events if f["job_id"] == job_id and f["type"] == "job.completed")


def lost_events(client: redis.Redis, job_id: str) -> int:
    events = client.xrange(KEYS.events)
    return sum(1 for _, f in events if f["job_id"] == job_id and f["type"] == "job.lost")


def running_on(client: redis.Redis, job_id: str, consumer: str) -> bool:
    record = client.hgetall(KEYS.job(job_id))
    return record.get("status") == "RUNNING" and record.get("owner") == consumer


def test_a_worker_resumed_after_its_job_was_taken_over_cannot_overwrite_the_new_result(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    stale = workers.start(server.url, concurrency=1)
    stale_pool = wait_until(lambda: pool_of(stale.pid, client), 10, "the first pool")
    spec = {"handler": "work", "args": (1.5,), "job_id": "paused"}
    [job] = submit(server.url, [spec], via=workers.combo)
    wait_until(lambda: running_on(client, job, stale_pool), 10, "the job to run")
    wait_until(lambda: ledger.hget("runs", job), 5, "the handler to start")

    os.kill(stale.pid, signal.SIGSTOP)
    try:
        fresh = workers.start(server.url, concurrency=1)
        fresh_pool = wait_until(lambda: pool_of(fresh.pid, client), 10, "the second pool")
        wait_until(lambda: statuses(client, [job]) == ["COMPLETED"], 15, "the takeover")
        taken = client.hgetall(KEYS.job(job))
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    assert taken["owner"] == fresh_pool
    assert f'"pid":{fresh.pid}' in taken["result"]

    log = wait_until(
        lambda: "outcome refused" in (text := workers.log(stale)) or "abandoning" in text,
        10, "the resumed worker to give the job up",
    )  # fmt: skip
    assert log
    assert client.hgetall(KEYS.job(job)) == taken, "the stale worker changed the record"
    assert completions(client, job) == 1
    assert ledger.hget("runs", job) == "2"

    assert workers.terminate(fresh) == 0  # the resumed worker alone serves what comes next
    spec = {"handler": "work", "args": (0,), "job_id": "after"}
    [after] = submit(server.url, [spec], via=workers.combo)
    wait_until(lambda: statuses(client, [after]) == ["COMPLETED"], 10, "the resumed worker")
    assert client.hget(KEYS.job(after), "owner") == stale_pool
    check_invariants(client, ledger, KEYS, [job, after], lease=LEASE)
    assert workers.terminate(stale) == 0


def keep_alive(client: redis.Redis, workers: Workers, url: str, concurrency: int, count: int,
               until: str) -> int:  # fmt: skip
    """Keep `count` worker processes running, restarting dead ones as a supervisor would,
    until the job `until` is dead-lettered (bounded: 20 s); returns how many died."""
    alive = [workers.start(url, concurrency=concurrency) for _ in range(count)]
    deaths = 0
    for _ in range(200):
        if statuses(client, [until]) == ["DEAD_LETTER"]:
            break
        for i, proc in enumerate(alive):
            if proc.poll() is not None:
                deaths += 1
                alive[i] = workers.start(url, concurrency=concurrency)
        time.sleep(0.1)
    assert statuses(client, [until]) == ["DEAD_LETTER"], f"{until} never dead-lettered"
    return deaths


def test_a_handler_that_kills_its_worker_is_dead_lettered_after_max_crashes(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    spec = {"handler": "crash", "job_id": "poison", "max_retries": 10}
    [poison] = submit(server.url, [spec], via=workers.combo)
    others = submit(server.url, work(100, seconds=0.01, prefix="other"), via=workers.combo)
    deaths = keep_alive(client, workers, server.url, 1, 2, until=poison)

    assert deaths == 3
    record = client.hgetall(KEYS.job(poison))
    assert record["attempts"] == "3"
    assert ledger.hget("runs", poison) == "3"
    [dead] = [f for _, f in client.xrange(KEYS.dead) if f["id"] == poison]
    assert dead["reason"] == "worker lost"
    assert "lost 3 times" in dead["error"]
    later = submit(server.url, work(50, seconds=0.01, prefix="later"), via=workers.combo)
    wait_until(lambda: all_terminal(client, others + later), 30, "the other jobs")
    report = check_invariants(client, ledger, KEYS, [poison, *others, *later], lease=LEASE)
    assert report.statuses["COMPLETED"] == len(others) + len(later)


def test_jobs_running_beside_a_crashing_handler_are_not_dead_lettered_with_it(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    spec = {"handler": "crash", "job_id": "poison", "max_retries": 10}
    [poison] = submit(server.url, [spec], via=workers.combo)
    bystanders = submit(server.url, work(3, seconds=0.5, prefix="bystander"), via=workers.combo)
    keep_alive(client, workers, server.url, 4, 1, until=poison)
    wait_until(lambda: all_terminal(client, bystanders), 30, "the bystanders")
    report = check_invariants(client, ledger, KEYS, [poison, *bystanders], lease=LEASE)
    assert [report.status(i) for i in bystanders] == ["COMPLETED"] * 3


def test_a_handler_blocking_the_event_loop_past_the_lease_is_not_run_twice_within_its_timeout(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    blocked = workers.start(server.url, concurrency=1)
    blocked_pool = wait_until(lambda: pool_of(blocked.pid, client), 10, "the first pool")
    spec = {"handler": "block", "args": (4 * LEASE, False), "job_id": "hog", "timeout": 30}
    [job] = submit(server.url, [spec], via=workers.combo)
    wait_until(lambda: running_on(client, job, blocked_pool), 10, "the job to run")
    rival = workers.start(server.url, concurrency=1)
    wait_until(lambda: pool_of(rival.pid, client), 10, "the rival pool")  # reclaiming, ready

    wait_until(lambda: statuses(client, [job]) == ["COMPLETED"], 15, "the blocked job")
    record = client.hgetall(KEYS.job(job))
    assert record["owner"] == blocked_pool
    assert record["attempts"] == "1"
    assert ledger.hget("runs", job) == "1"
    assert lost_events(client, job) == 0
    check_invariants(client, ledger, KEYS, [job], lease=LEASE)


def test_a_worker_whose_loop_stays_blocked_past_the_job_timeout_loses_the_job(
    server: RedisProcess, ledger: redis.Redis, workers: Workers
) -> None:
    client = server.client()
    blocked = workers.start(server.url, concurrency=1)
    blocked_pool = wait_until(lambda: pool_of(blocked.pid, client), 10, "the first pool")
    spec = {"handler": "block", "args": (8 * LEASE, True), "job_id": "hog", "timeout": LEASE}
    [job] = submit(server.url, [spec], via=workers.combo)
    wait_until(lambda: running_on(client, job, blocked_pool), 10, "the job to run")
    rival = workers.start(server.url, concurrency=1)
    rival_pool = wait_until(lambda: pool_of(rival.pid, client), 10, "the rival pool")

    # renewed until timeout + one lease, lapsed one lease later, then taken back
    wait_until(lambda: statuses(client, [job]) == ["COMPLETED"], 8 * LEASE, "the takeover")
    taken = client.hgetall(KEYS.job(job))
    assert taken["owner"] == rival_pool
    assert f'"pid":{rival.pid}' in taken["result"]
    assert (taken["attempts"], taken["crashes"]) == ("2", "1")
    assert blocked.poll() is None
    wait_until(
        lambda: "outcome refused" in (text := workers.log(blocked)) or "abandoning" in text,
        15, "the blocked worker to give the job up",
    )  # fmt: skip
    assert client.hgetall(KEYS.job(job)) == taken
    check_invariants(client, ledger, KEYS, [job], lease=LEASE)
