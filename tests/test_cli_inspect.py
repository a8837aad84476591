"""`streamjobs info|workers|jobs show|events|dead-letters|submit` as subprocesses against a
real redis-server, on a workload the example app (examples/app.py) ran."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from streamjobs import JobService, RedisJobQueue
from streamjobs._keys import QueueKeys

ROOT = Path(__file__).resolve().parent.parent
Cli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli(redis_url: str, queue_name: str) -> Cli:
    """Run `python -m streamjobs ...` on this test's queue; fails on a traceback."""

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "streamjobs", *args]
        if args[0] == "worker":
            cmd += ["--queue", queue_name, "--log-level", "warning"]
        else:
            cmd += ["--queue", queue_name, "--redis-url", redis_url]
        env = {**os.environ, "REDIS_URL": redis_url, "MEDIA_STEP_SECONDS": "0.01"}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert "Traceback" not in done.stderr, done.stderr
        assert (done.returncode == 0) is ok, done.stderr
        return done

    return run


def cli_json(cli: Cli, *args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(name=queue_name)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    yield c
    c.close()


def submit_many(url: str, queue: str, specs: list[dict[str, Any]]) -> list[str]:
    async def go() -> list[str]:
        async with JobService(queue=RedisJobQueue(url, name=queue)) as svc:
            return await svc.submit_many(specs)

    return anyio.run(go)


def media(quality: str = "low", **extra: Any) -> dict[str, Any]:
    return {"handler": "process_media", "args": [7], "kwargs": {"quality": quality}, **extra}


def unknown() -> dict[str, Any]:
    return {"handler": "no_such_handler"}


def test_info_json_reports_the_numbers_of_a_known_workload(
    cli: Cli, redis_url: str, queue_name: str
) -> None:
    submit_many(redis_url, queue_name, [media(), media(), media("8k"), unknown(), unknown()])
    cli("worker", "examples.app:service", "--burst", "--concurrency", "2")
    waiting = [media(priority="high")] * 2 + [media()] * 3 + [media(priority="low")]
    submit_many(redis_url, queue_name, [*waiting, media(delay=600)])
    info = cli_json(cli, "info")
    assert info["pending"] == {"critical": 0, "high": 2, "normal": 3, "low": 1}
    assert info["pending_total"] == 6
    assert (info["running"], info["scheduled"], info["retrying"]) == (0, 1, 0)
    assert info["dead_letters"] == 2
    assert info["last_minute"] == {"completed": 2, "failed": 3}  # FAILED and dead letters
    assert info["totals"]["completed"] == 2 and info["totals"]["failed"] == 1
    assert info["workers"]["total"] == 0 and info["pools"] == []
    assert "pending (high)" in cli("info").stdout


def test_jobs_show_reports_record_attempts_progress_result_and_error(
    cli: Cli, redis_url: str, queue_name: str
) -> None:
    good, bad = submit_many(redis_url, queue_name, [media("high"), media("8k")])
    cli("worker", "examples.app:service", "--burst", "--concurrency", "2")
    shown = cli_json(cli, "jobs", "show", good)
    assert (shown["status"], shown["attempts"]) == ("COMPLETED", 1)
    assert shown["result"]["height"] == 1080
    assert shown["progress"]["message"] == "Complete"
    assert [e["type"] for e in shown["history"]][-1] == "job.completed"
    failed = cli_json(cli, "jobs", "show", bad)
    assert failed["status"] == "FAILED" and "unsupported quality" in failed["error"]
    assert good in cli("jobs", "show", good).stdout


def test_dead_letters_list_retry_one_retry_all_and_purge(
    cli: Cli, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str
) -> None:
    ids = submit_many(redis_url, queue_name, [unknown()] * 3)
    cli("worker", "examples.app:service", "--burst")
    listed = cli_json(cli, "dead-letters", "list")
    assert sorted(d["id"] for d in listed) == sorted(ids)
    assert "unknown handler" in listed[0]["error"]
    assert cli_json(cli, "dead-letters", "retry", ids[0]) == {"retried": 1}
    assert client.hget(keys.job(ids[0]), "status") == "PENDING"
    assert cli_json(cli, "dead-letters", "retry", "--all") == {"retried": 2, "skipped": 0}
    assert cli_json(cli, "dead-letters", "list") == []
    cli("worker", "examples.app:service", "--burst")
    assert cli_json(cli, "dead-letters", "purge", "--yes") == {"purged": 3}
    assert cli_json(cli, "dead-letters", "list") == []
    assert all(not client.exists(keys.job(i)) for i in ids)
    assert "purged" in cli("dead-letters", "purge", "--yes").stdout


def test_submit_queues_a_job_with_its_arguments_and_priority(
    cli: Cli, client: redis.Redis, keys: QueueKeys
) -> None:
    args = ("submit", "process_media", "--args", "[42]", "--kwargs", '{"quality": "high"}')
    job = cli_json(cli, *args, "--priority", "HIGH", "--max-retries", "5")["id"]
    record = client.hgetall(keys.job(job))
    assert (record["status"], record["priority"], record["max_retries"]) == ("PENDING", "20", "5")
    assert json.loads(record["args"]) == [42]
    assert json.loads(record["kwargs"]) == {"quality": "high"}


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline()


def test_events_follow_prints_new_events_live_until_sigterm(
    redis_url: str, queue_name: str
) -> None:
    cmd = [sys.executable, "-m", "streamjobs", "events", "--follow", "--count", "0", "--json",
           "--redis-url", redis_url, "--queue", queue_name]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # let it start following before the job is submitted
        (job,) = submit_many(redis_url, queue_name, [media()])
        event = json.loads(_read_line(proc, timeout=10))
        assert (event["type"], event["job_id"]) == ("job.queued", job)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)


def test_workers_lists_a_running_worker_as_healthy(
    cli: Cli, redis_url: str, queue_name: str
) -> None:
    cmd = [sys.executable, "-m", "streamjobs", "worker", "examples.app:service",
           "--concurrency", "2", "--log-level", "warning", "--queue", queue_name]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "REDIS_URL": redis_url})
    try:
        deadline = time.monotonic() + 15
        while not (found := cli_json(cli, "workers")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(found) == 2 and all(w["healthy"] for w in found)
        assert {w["pid"] for w in found} == {proc.pid}
        assert "healthy" in cli("workers").stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
