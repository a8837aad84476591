"""What the dashboard tests share: uvicorn serving it in a thread, plain HTTP, and a worker
pool with the tests' handlers on its own event loop in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import uvicorn

from streamjobs import JobDefinition, JobService, Timings
from streamjobs.web import create_app
from tests._redis import free_port

#: Jobs whose id is in here succeed; the rest of `healable` fail (and so dead-letter).
HEALED: set[str] = set()


async def quick(job: JobDefinition, progress: Any) -> int:
    """Done at once."""
    return 1


async def stepping(job: JobDefinition, progress: Any) -> str:
    """Reports progress in ten steps over about three seconds."""
    for step in range(1, 11):
        await anyio.sleep(0.3)
        await progress(step, 10, f"step {step}")
    return "stepped"


async def healable(job: JobDefinition, progress: Any) -> str:
    """Fails until the test heals its id."""
    if job.id not in HEALED:
        raise RuntimeError("not healed yet")
    return "healed"


#: Jobs of `gated` in here may finish.
RELEASED: set[str] = set()


async def gated(job: JobDefinition, progress: Any) -> str:
    """Runs until the test releases its id (10 s at most)."""
    for _ in range(500):  # 10 s at most
        if job.id in RELEASED:
            return "released"
        await anyio.sleep(0.02)
    raise TimeoutError("never released")


@contextlib.contextmanager
def workers(redis_url: str, queue: str, count: int = 2) -> Iterator[None]:
    """A worker pool on the queue, run on its own event loop in a thread."""
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def run() -> None:
        timings = Timings(heartbeat=0.5)
        async with JobService(redis_url, name=queue, timings=timings) as svc:
            for handler in (quick, stepping, healable, gated):
                svc.register_handler(handler.__name__, handler)
            await svc.start_workers(count)
            ready.set()
            await anyio.to_thread.run_sync(stop.wait)

    def main() -> None:
        try:
            anyio.run(run)
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10), "the workers did not start within 10 s"
    try:
        yield
    finally:
        stop.set()
        thread.join(15)
    assert not failure, failure


@contextlib.contextmanager
def serving(redis_url: str, queue: str, **options: Any) -> Iterator[str]:
    """uvicorn serving the dashboard in a thread; yields its base URL."""
    app = create_app(redis_url, name=queue, **options)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start within 10 s"
        assert thread.is_alive(), "the dashboard's server thread died at start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """GET without following redirects: status, body, headers."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return int(r.status), r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode(), dict(exc.headers)
