"""Processes the benchmark starts: its own redis-server and peers' worker processes.

Everything started here is ended here, by PID (worker processes by the process group they lead,
so a peer's forked children go too), in ``finally`` blocks. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

SCRIPTS_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = SCRIPTS_DIR.parent  # so the checkout's streamjobs imports without being installed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def redis_server(binary: str = "redis-server") -> Iterator[str]:
    """Start a private, non-persistent redis-server on a free loopback port; yield its URL."""
    tmp = tempfile.mkdtemp(prefix="bench-redis-")
    port = free_port()
    cmd = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        tmp,
        "--loglevel",
        "warning",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        if not wait_until(lambda: _pings(url), 10, 0.05):
            raise RuntimeError(f"redis-server on port {port} did not start")
        yield url
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a process we started, then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def worker_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_REDIS_URL"] = url
    paths = [str(SCRIPTS_DIR), str(REPO_DIR), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def resolve(cmd: list[str]) -> list[str]:
    """Run a peer's CLI from the benchmark's own environment (next to sys.executable)."""
    local = Path(sys.executable).parent / cmd[0]
    return [str(local), *cmd[1:]] if local.exists() else cmd


def spawn_worker(cmd: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a worker as the leader of a new process group (so its children die with it)."""
    out = log.open("ab")
    try:
        return subprocess.Popen(
            resolve(cmd),
            env=worker_env(url),
            cwd=SCRIPTS_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        out.close()


def kill_worker(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the worker's process group (its PID), then reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    # A child that outlived its leader is still in the group: sweep it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
