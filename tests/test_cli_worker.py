"""`streamjobs worker` as a subprocess against a real redis-server: burst, signals, leases,
the supervisor, and the event-loop lag probe."""

from __future__ import annotations

import json
import os
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

APP = """
import asyncio
import gc
import time

import anyio
import sniffio

from streamjobs import JobService


async def sleep(job, progress):
    await anyio.sleep(float(job.args[0]))
    return "slept"


async def where(job, progress):
    classes = {type(o) for o in gc.get_objects()}
    drivers = {c.__name__ for c in classes if c.__name__.endswith("Driver")
               and str(c.__module__).startswith("streamjobs._drivers.")}
    drivers.discard("SyncDriver")  # the lease thread's, the same on every driver
    return {"library": sniffio.current_async_library(), "drivers": sorted(drivers)}


async def block_loop(job, progress):
    for _ in range(int(job.args[0])):
        time.sleep(1.5)  # blocks the event loop on purpose
        await anyio.sleep(0)
    return "blocked"


async def exits(job, progress):
    raise SystemExit(int(job.args[0]))


async def cancels(job, progress):
    raise asyncio.CancelledError


async def interrupts(job, progress):
    raise KeyboardInterrupt


service = JobService()
service.register_handler("sleep", sleep)
service.register_handler("block_loop", block_loop)
service.register_handler("where", where)
service.register_handler("exits", exits)
service.register_handler("cancels", cancels)
service.register_handler("interrupts", interrupts)
"""

Worker = Callable[..., "subprocess.Popen[bytes]"]


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def submit(url: str, queue: str, handler: str, *args: Any, **options: Any) -> str:
    async def go() -> str:
        async with JobService(queue=RedisJobQueue(url, name=queue)) as svc:
            return await svc.submit_job(handler, args, **options)

    return anyio.run(go)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cliapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    yield c
    c.close()


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(name=queue_name)


@pytest.fixture
def worker(app_dir: Path, redis_url: str, queue_name: str) -> Iterator[Worker]:
    """Start `streamjobs worker cliapp:service` processes; any still running at the end are
    killed by PID."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "streamjobs", "worker", "cliapp:service",
               "--queue", queue_name, "--log-level", "warning", *options]  # fmt: skip
        env = {**os.environ, "REDIS_URL": redis_url}
        proc = subprocess.Popen(cmd, cwd=app_dir, env=env, stderr=subprocess.PIPE)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def status(client: redis.Redis, keys: QueueKeys, job_id: str) -> str | None:
    value: str | None = client.hget(keys.job(job_id), "status")
    return value


def wait_running(client: redis.Redis, keys: QueueKeys, job_id: str) -> None:
    wait_until(lambda: status(client, keys, job_id) == "RUNNING", 10, f"job {job_id} to run")


def exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int:
    _, err = proc.communicate(timeout=timeout)
    assert b"Traceback" not in err, err.decode()
    return proc.returncode


def completions(client: redis.Redis, keys: QueueKeys, job_id: str) -> int:
    entries = client.xrange(keys.events)
    return sum(1 for _, f in entries if f["job_id"] == job_id and f["type"] == "job.completed")


def test_burst_worker_drains_the_queue_and_exits_zero(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str
) -> None:
    ids = [submit(redis_url, queue_name, "sleep", 0.1) for _ in range(6)]
    proc = worker("--burst", "--concurrency", "3")
    assert exit_code(proc, timeout=30) == 0
    assert [status(client, keys, i) for i in ids] == ["COMPLETED"] * 6


@pytest.mark.parametrize(
    ("backend", "driver", "driver_class"),
    [
        ("asyncio", "resp", "RespDriver"),
        ("asyncio", "redis-py", "RedisPyDriver"),
        ("asyncio", "coredis", "CoredisDriver"),
        ("trio", "coredis", "CoredisDriver"),
    ],
)
def test_worker_runs_jobs_on_the_event_loop_and_driver_its_options_name(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str,
    backend: str, driver: str, driver_class: str,
) -> None:  # fmt: skip
    job = submit(redis_url, queue_name, "where", max_retries=0)
    proc = worker("--burst", "--concurrency", "2", "--backend", backend, "--driver", driver)
    assert exit_code(proc, timeout=30) == 0
    assert status(client, keys, job) == "COMPLETED", client.hgetall(keys.job(job))
    result = json.loads(client.hget(keys.job(job), "result") or "null")
    assert result == {"library": backend, "drivers": [driver_class]}


def test_a_trio_worker_without_a_driver_option_runs_on_coredis(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str
) -> None:
    job = submit(redis_url, queue_name, "where", max_retries=0)
    assert exit_code(worker("--burst", "--backend", "trio"), timeout=30) == 0
    assert status(client, keys, job) == "COMPLETED", client.hgetall(keys.job(job))
    result = json.loads(client.hget(keys.job(job), "result") or "null")
    assert result == {"library": "trio", "drivers": ["CoredisDriver"]}


def test_sigterm_lets_the_running_job_finish_then_exits_zero(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str
) -> None:
    job = submit(redis_url, queue_name, "sleep", 2)
    proc = worker("--concurrency", "1")
    wait_running(client, keys, job)
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, timeout=15) == 0
    assert status(client, keys, job) == "COMPLETED"
    assert client.hget(keys.job(job), "attempts") == "1"


def test_sigterm_with_zero_grace_hands_the_job_back_for_another_worker(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str
) -> None:
    job = submit(redis_url, queue_name, "sleep", 2)
    first = worker("--concurrency", "1", "--grace", "0")
    wait_running(client, keys, job)
    first.send_signal(signal.SIGTERM)
    assert exit_code(first, timeout=10) == 0
    assert status(client, keys, job) == "PENDING"  # handed back at once, no lease to wait out
    assert completions(client, keys, job) == 0  # cut short, not waited for
    second = worker("--burst", "--concurrency", "1")
    assert exit_code(second, timeout=20) == 0
    assert status(client, keys, job) == "COMPLETED"
    assert completions(client, keys, job) == 1


def test_second_sigint_stops_at_once_and_hands_the_job_back(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str
) -> None:
    job = submit(redis_url, queue_name, "sleep", 30)
    proc = worker("--concurrency", "1")
    wait_running(client, keys, job)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert exit_code(proc, timeout=10) == 0
    assert status(client, keys, job) == "PENDING"


@pytest.mark.parametrize(
    ("backend", "raising"),
    [
        ("asyncio", {"exits": "SystemExit: 3", "interrupts": "KeyboardInterrupt",
                     "cancels": "CancelledError"}),
        ("trio", {"exits": "SystemExit: 3", "interrupts": "KeyboardInterrupt"}),
    ],
    ids=["asyncio", "trio"],
)  # fmt: skip
def test_a_handler_raising_a_base_exception_is_dead_lettered_and_the_process_serves_on(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str,
    backend: str, raising: dict[str, str],
) -> None:  # fmt: skip
    ids = {h: submit(redis_url, queue_name, h, 3, max_retries=1, retry_delay=0.05) for h in raising}
    proc = worker("--concurrency", "1", "--backend", backend)
    for handler, job in ids.items():
        wait_until(lambda j=job: status(client, keys, j) == "DEAD_LETTER", 15, f"{handler} dead")
        assert client.hget(keys.job(job), "attempts") == "2"
        assert client.hget(keys.job(job), "error") == raising[handler]
    assert proc.poll() is None  # the worker process lives on, and still serves
    job = submit(redis_url, queue_name, "sleep", 0.01)
    wait_until(lambda: status(client, keys, job) == "COMPLETED", 10, "the next job to run")
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, timeout=15) == 0


def test_sigkill_mid_job_loses_nothing_once_the_lease_lapses(
    worker: Worker, client: redis.Redis, keys: QueueKeys, redis_url: str, queue_name: str
) -> None:
    job = submit(redis_url, queue_name, "sleep", 1)
    first = worker("--concurrency", "1", "--lease", "1")
    wait_running(client, keys, job)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=10)
    second = worker("--burst", "--concurrency", "1", "--lease", "1")
    assert exit_code(second, timeout=30) == 0
    assert status(client, keys, job) == "COMPLETED"
    assert completions(client, keys, job) == 1


def _pool_pids(client: redis.Redis, keys: QueueKeys, parent: int) -> set[int]:
    """PIDs of the registered pools that are live children of `parent`."""
    pids = set()
    for pool in client.zrange(keys.workers, 0, -1):
        pid = int(client.hget(keys.pool(pool), "pid") or 0)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == parent:
            pids.add(pid)
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc for parent PIDs")
def test_supervisor_restarts_a_worker_process_killed_with_sigkill(
    worker: Worker, client: redis.Redis, keys: QueueKeys
) -> None:
    supervisor = worker("--processes", "2", "--concurrency", "1", "--grace", "1")

    def two_children(excluding: set[int]) -> set[int] | None:
        found = _pool_pids(client, keys, supervisor.pid) - excluding
        return found if len(found) == 2 else None

    victim = min(wait_until(lambda: two_children(set()), 15, "two worker processes"))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: two_children({victim}), 15, "a replacement worker process")
    supervisor.send_signal(signal.SIGTERM)
    assert exit_code(supervisor, timeout=20) == 0
    assert _pool_pids(client, keys, supervisor.pid) == set()


def _info_pools(app_dir: Path, redis_url: str, queue_name: str) -> list[dict[str, Any]]:
    import json

    cmd = [sys.executable, "-m", "streamjobs", "info", "--json", "--redis-url", redis_url,
           "--queue", queue_name]  # fmt: skip
    out = subprocess.run(cmd, cwd=app_dir, capture_output=True, timeout=20, check=True).stdout
    pools: list[dict[str, Any]] = json.loads(out)["pools"]
    return pools


def test_a_handler_that_blocks_the_loop_shows_the_worker_unhealthy(
    worker: Worker, app_dir: Path, redis_url: str, queue_name: str
) -> None:
    submit(redis_url, queue_name, "block_loop", 6)
    worker("--concurrency", "1")

    async def unhealthy_workers() -> list[Any]:
        async with JobService(queue=RedisJobQueue(redis_url, name=queue_name)) as svc:
            return [w for w in await svc.get_workers() if not w.healthy and w.loop_lag > 1]

    found = wait_until(lambda: anyio.run(unhealthy_workers), 15, "an unhealthy worker")
    assert found[0].loop_lag > 1
    pools = wait_until(
        lambda: [p for p in _info_pools(app_dir, redis_url, queue_name) if not p["healthy"]],
        15, "info to show the pool unhealthy",
    )  # fmt: skip
    assert pools[0]["loop_lag"] > 1


def test_json_log_format_writes_one_json_object_per_line(
    app_dir: Path, redis_url: str, queue_name: str
) -> None:
    import json

    submit(redis_url, queue_name, "sleep", 0)
    cmd = [sys.executable, "-m", "streamjobs", "worker", "cliapp:service", "--burst",
           "--queue", queue_name, "--redis-url", redis_url, "--log-format", "json"]  # fmt: skip
    done = subprocess.run(cmd, cwd=app_dir, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert any("completed" in line["message"] for line in lines)
    assert {"time", "level", "logger", "pid", "message"} <= set(lines[0])


def test_make_worker_serves_the_example_app_on_a_throwaway_redis(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["MEDIA_STEP_SECONDS"] = "0.01"
    cmd = [sys.executable, str(root / "examples" / "run_worker.py"), "--burst",
           "--log-level", "warning"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    url = done.stdout.split("throwaway redis-server at ", 1)[1].split(";", 1)[0]
    gone = redis.Redis.from_url(url, socket_connect_timeout=2)
    with pytest.raises(redis.ConnectionError):  # the server it started is gone with it
        gone.ping()
    gone.close()
