"""One worker process: run the pool until a signal, an empty queue (`--burst`) or the
supervisor's death, then stop it the way the operator asked."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from functools import partial
from wsgiref.simple_server import WSGIServer

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._metrics import metrics_from
from ..errors import ConfigurationError, StreamJobsError
from ..service import JobService
from ._common import CliError, connect

log = logging.getLogger("streamjobs.cli")

#: Set by the supervisor in its children: a child whose parent changed stops gracefully.
SUPERVISOR_ENV = "STREAMJOBS_SUPERVISOR_PID"

BURST_POLL = 0.25  # seconds between a burst worker's looks at the queue


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker process runs (the `streamjobs worker` options it acts on)."""

    concurrency: int | None
    grace: float | None
    burst: bool
    metrics: tuple[str, int] | None = None  # (host, port) to serve Prometheus metrics on


class Stopper:
    """Stops the pool once: gracefully within `grace`, or at once on a second SIGINT."""

    def __init__(self, svc: JobService, tg: TaskGroup, grace: float | None) -> None:
        self._svc, self._tg, self._grace = svc, tg, grace
        self.requested = False

    def request(self, why: str) -> None:
        """Stop taking jobs; running ones get `grace` seconds, the rest are handed back."""
        if self.requested:
            return
        self.requested = True
        within = "" if self._grace is None else f" within {self._grace:g}s"
        log.info("%s: finishing running jobs%s, then handing back the rest", why, within)
        self._tg.start_soon(self._stop)

    def now(self, why: str) -> None:
        """Stop at once: running jobs are cancelled and handed back to their streams."""
        log.warning("%s: stopping now; running jobs go back to the queue", why)
        self._tg.cancel_scope.cancel()

    async def _stop(self) -> None:
        await self._svc.worker_pool.stop(graceful=True, grace=self._grace)
        self._tg.cancel_scope.cancel()


async def _watch_signals(stopper: Stopper, *, task_status: TaskStatus[None]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stopper.requested:
                stopper.request(name)
            elif signum == signal.SIGINT:
                stopper.now(f"second {name}")
            else:
                log.info("%s again: still stopping (a second SIGINT stops at once)", name)


async def _queue_is_empty(svc: JobService) -> bool:
    timings = svc.worker_pool.timings
    queue = metrics_from(await svc.queue.snapshot(timings.registry_ttl), timings)["queue"]
    return int(queue["pending"]) + int(queue["running"]) + int(queue["retrying"]) == 0


async def _watch_burst(svc: JobService, stopper: Stopper) -> None:
    """Stop once nothing is pending, running or waiting to retry, twice in a row."""
    quiet = 0
    while quiet < 2:
        await anyio.sleep(BURST_POLL)
        try:
            quiet = quiet + 1 if await _queue_is_empty(svc) else 0
        except StreamJobsError as exc:
            log.warning("burst: cannot read the queue (%s); looking again", exc)
            quiet = 0
    stopper.request("burst: the queue is empty")


async def _watch_parent(expected: int, stopper: Stopper) -> None:
    """A supervised child outlives its supervisor only until it notices (within a second)."""
    while os.getppid() == expected:  # noqa: ASYNC110 - no event tells of a parent's death
        await anyio.sleep(1.0)
    stopper.request("the supervisor is gone")


def _metrics_server(svc: JobService, where: tuple[str, int]) -> WSGIServer:
    """This process's job metrics at /metrics on `where` (host, port), bound before the
    pool starts: a missing extra or a port in use fails the command at once."""
    try:
        from prometheus_client import CollectorRegistry, make_wsgi_app

        from ..prometheus import WorkerMetrics, quiet_server
    except (ImportError, ConfigurationError):
        raise CliError("--metrics-port needs the prometheus extra: "
                       "pip install 'streamjobs[prometheus]'") from None  # fmt: skip
    registry = CollectorRegistry()
    WorkerMetrics(registry).observe(svc)
    host, port = where
    try:
        return quiet_server(host, port, make_wsgi_app(registry))
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None


async def _serve_metrics(server: WSGIServer) -> None:
    """Serve from a thread until cancelled, then end the server (and so the thread)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(anyio.to_thread.run_sync, server.serve_forever, 0.2))
        try:
            await anyio.sleep_forever()
        finally:
            server.shutdown()  # returns once serve_forever has (within its 0.2 s poll)
            server.server_close()


async def serve(svc: JobService, opts: WorkerOptions) -> int:
    """Run the worker pool in this process until stopped; returns the exit code (0).

    The queue is connected and closed by this task outside any cancel scope of its own, as
    the coredis driver needs; nothing cancels this task (it is the process's root), so the
    close needs no shield."""
    server = _metrics_server(svc, opts.metrics) if opts.metrics else None
    await connect(svc.queue, within=None)
    try:
        async with anyio.create_task_group() as tg:
            if server is not None:
                tg.start_soon(_serve_metrics, server)
            stopper = Stopper(svc, tg, opts.grace)
            await tg.start(_watch_signals, stopper)
            await tg.start(svc.run_workers, opts.concurrency)
            if opts.burst:
                tg.start_soon(_watch_burst, svc, stopper)
            if parent := os.environ.get(SUPERVISOR_ENV):
                tg.start_soon(_watch_parent, int(parent), stopper)
    finally:
        await svc.queue.close()
    return 0
