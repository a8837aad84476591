"""Processes the benchmark starts: its own redis-server and peers' worker processes.

Everything started here is ended here, by PID (worker processes by the process group they lead,
so a peer's forked children go too), in ``finally`` blocks. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import random
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


def _spawn(binary: str, port: int, tmp: str, *extra: str) -> subprocess.Popen[bytes]:
    """A private, non-persistent redis-server on `port` (loopback), started; not yet waited for."""
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", tmp, "--loglevel", "warning", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _await_ping(url: str, what: str) -> None:
    if not wait_until(lambda: _pings(url), 10, 0.05):
        raise RuntimeError(f"{what} at {url} did not start")


@contextlib.contextmanager
def redis_server(binary: str = "redis-server") -> Iterator[str]:
    """Start a private, non-persistent redis-server on a free loopback port; yield its URL."""
    tmp = tempfile.mkdtemp(prefix="bench-redis-")
    port = free_port()
    proc = _spawn(binary, port, tmp)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _await_ping(url, "redis-server")
        yield url
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster(primaries: int = 3, binary: str = "redis-server") -> Iterator[list[str]]:
    """Start a private Redis Cluster of `primaries` nodes (no replicas) on free loopback ports,
    joined by ``redis-cli --cluster create``; yield the node URLs."""
    tmp = tempfile.mkdtemp(prefix="bench-cluster-")
    ports = [_free_cluster_port() for _ in range(primaries)]
    procs = []
    try:
        for port in ports:
            procs.append(_spawn(binary, port, tmp, "--cluster-enabled", "yes",
                                "--cluster-config-file", f"nodes-{port}.conf"))  # fmt: skip
        urls = [f"redis://127.0.0.1:{port}/0" for port in ports]
        for url in urls:
            _await_ping(url, "cluster node")
        cli = str(Path(binary).with_name("redis-cli")) if os.sep in binary else "redis-cli"
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                  "--cluster-yes"]  # fmt: skip
        subprocess.run(create, check=True, capture_output=True, timeout=60)
        if not wait_until(lambda: all(_cluster_ok(url) for url in urls), 30, 0.1):
            raise RuntimeError("the cluster did not reach cluster_state:ok within 30 s")
        yield urls
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, and below 65536."""
    for _ in range(200):
        port = random.randrange(20000, 50000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cluster_ok(url: str) -> bool:
    try:
        info = redis.Redis.from_url(url, socket_timeout=1, decode_responses=True).cluster("info")
    except redis.RedisError:
        return False
    return bool(info.get("cluster_state") == "ok")


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
