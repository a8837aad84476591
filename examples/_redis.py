"""A throwaway redis-server for the examples: `$REDIS_URL` when set, else one of our own on a
free port in a temp dir, ended (by its PID) when the block exits."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """Yield a Redis URL: $REDIS_URL, or a fresh redis-server that goes away afterwards."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH: install Redis 6.2+ or set REDIS_URL")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="streamjobs-redis-") as tmp:
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
               "--save", "", "--appendonly", "no"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(200):
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        break
                time.sleep(0.025)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)
