"""Helpers of the fault suite: the driver and event loop a scenario runs on, worker processes
of `tests.faults.app` (ended by PID), submitting, waiting and reading job states."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import redis

from streamjobs import JobService, RedisJobQueue
from streamjobs._keys import QueueKeys
from streamjobs.errors import PartialSubmitError, RedisUnavailableError
from tests.faults import app

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "faults"
KEYS = QueueKeys(name=QUEUE)
LEASE = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Combo:
    """A driver on an event loop: what a scenario's worker processes and submitters use."""

    driver: str
    backend: str

    @property
    def id(self) -> str:
        return f"{self.driver}-{self.backend}"

    def worker_args(self) -> list[str]:
        """The `streamjobs worker` options that pick this driver and loop."""
        return ["--backend", self.backend, "--driver", self.driver]

    def queue(self, url: str) -> RedisJobQueue:
        """The suite's queue at `url`, through this driver."""
        return RedisJobQueue(url, name=QUEUE, driver=self.driver)

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` to completion on this event loop. coredis leaves the memory streams of a
        connection it never started unclosed (see tests/conftest.py): after a coredis run
        they are collected here, their ResourceWarning ignored."""
        try:
            return anyio.run(fn, backend=self.backend)
        finally:
            if self.driver == "coredis":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)
                    gc.collect()


#: Every driver a user can get: resp first (the default on asyncio; the full set runs on it).
COMBOS = (
    Combo("resp", "asyncio"),
    Combo("redis-py", "asyncio"),
    Combo("coredis", "asyncio"),
    Combo("coredis", "trio"),  # the default on trio
)
RESP = COMBOS[0]


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


class Workers:
    """`streamjobs worker tests.faults.app:service` processes on one driver and loop;
    `close()` kills any left."""

    def __init__(self, ledger_url: str, logs: Path, combo: Combo) -> None:
        self.ledger_url, self.logs, self.combo = ledger_url, logs, combo
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, url: str, *, concurrency: int = 4, lease: float = LEASE,
        env: Mapping[str, str] | None = None, extra: Iterable[str] = (),
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        cmd = [sys.executable, "-m", "streamjobs", "worker", "tests.faults.app:service",
               "--redis-url", url, "--queue", QUEUE, "--concurrency", str(concurrency),
               "--lease", str(lease), "--log-level", "warning", *self.combo.worker_args(),
               *extra]  # fmt: skip
        full_env = {**os.environ, app.LEDGER_ENV: self.ledger_url, **(env or {})}
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=log)
        log.close()
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
        """SIGTERM (graceful: running jobs finish, the rest is handed back), then wait."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
        return proc.wait(timeout)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)


def pool_of(pid: int, client: redis.Redis) -> str | None:
    """The registered pool id (the consumer name) of the worker process `pid`."""
    for pool in client.zrange(KEYS.workers, 0, -1):
        if f"-{pid}-" in pool:
            return str(pool)
    return None


def submit(
    url: str, specs: list[dict[str, Any]], *, via: Combo, batch: int = 500,
    retry_for: float = 0,
) -> list[str]:  # fmt: skip
    """Submit jobs (submit_many, in batches) through the driver and loop `via`. With
    `retry_for`, a submit that meets an unreachable Redis is made again with the same job ids
    (idempotent, so a submit whose reply was lost enqueues nothing twice) for up to that many
    seconds, as an app should."""

    async def go() -> list[str]:
        ids: list[str] = []
        async with JobService(queue=via.queue(url)) as svc:
            for start in range(0, len(specs), batch):
                ids += await svc.submit_many(specs[start : start + batch])
        return ids

    deadline = time.monotonic() + retry_for
    for _ in range(1000):
        try:
            return via.run(go)
        except Exception as exc:
            if not unreachable(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    raise AssertionError("submit tried 1000 times")


def unreachable(exc: BaseException) -> bool:
    """A RedisUnavailableError, bare, as the cause of a PartialSubmitError (a bulk submit cut
    part way), or inside (nested) exception groups only: an error in the body of
    `async with JobService(...)` comes out wrapped by its task group."""
    inner = getattr(exc, "exceptions", None)
    if inner is not None:
        return all(unreachable(e) for e in inner)
    if isinstance(exc, PartialSubmitError):
        return isinstance(exc.__cause__, RedisUnavailableError)
    return isinstance(exc, RedisUnavailableError)


def work(
    n: int, *, seconds: float = 0.0, prefix: str = "j", **options: Any
) -> list[dict[str, Any]]:
    """Specs of `n` `work` jobs with ids of our own, priorities mixed."""
    priorities = ("critical", "high", "normal", "low")
    return [
        {"handler": "work", "args": (seconds,), "job_id": f"{prefix}{i}",
         "priority": priorities[i % 4], **options}
        for i in range(n)
    ]  # fmt: skip


def statuses(client: redis.Redis, ids: list[str]) -> list[str | None]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(KEYS.job(job_id), "status")
    return list(pipe.execute())


def all_terminal(client: redis.Redis, ids: list[str]) -> bool:
    terminal = {"COMPLETED", "FAILED", "DEAD_LETTER", "CANCELLED"}
    return all(s in terminal for s in statuses(client, ids))
