"""`--processes P`: one supervisor process keeps P worker processes running.

Each child runs in its own session, so a Ctrl-C at the terminal reaches the supervisor alone,
which passes every SIGINT and SIGTERM on: the children stop exactly as a single worker would.
A child that dies is started again after a backoff that grows while children keep dying young.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import anyio
from anyio.abc import Process, TaskStatus

from ._worker import SUPERVISOR_ENV

log = logging.getLogger("streamjobs.cli")

MAX_BACKOFF = 30.0  # seconds between restarts at most
HEALTHY_RUN = 10.0  # a child that lived this long resets the backoff


def backoff(failures: int) -> float:
    """Seconds to wait before restarting after `failures` quick deaths in a row."""
    return min(0.5 * 2.0 ** max(failures - 1, 0), MAX_BACKOFF)


def describe_exit(code: int) -> str:
    """'exit code 3' or 'signal SIGKILL', for a log line."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Runs `argv` as `processes` children until a signal; `burst` children may finish."""

    def __init__(self, argv: Sequence[str], processes: int, *, burst: bool) -> None:
        self._argv, self._count, self._burst = list(argv), processes, burst
        self._children: dict[int, Process] = {}
        self._stopping = False
        self._stopped: anyio.Event | None = None

    async def run(self) -> int:
        """Supervise until every slot is done; 0 unless a burst child failed for good."""
        self._stopped = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(self._forward_signals)
            async with anyio.create_task_group() as slots:
                for slot in range(self._count):
                    slots.start_soon(self._keep, slot)
            tg.cancel_scope.cancel()
        return 0

    async def _forward_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                self._stopping = True
                if self._stopped is not None:
                    self._stopped.set()
                name = signal.Signals(signum).name
                log.info("%s: passing it on to %d worker process(es)", name, len(self._children))
                for proc in list(self._children.values()):
                    if proc.returncode is None:
                        proc.send_signal(signum)

    async def _keep(self, slot: int) -> None:
        failures = 0
        while not self._stopping:
            began = time.monotonic()
            code = await self._run_child(slot)
            if self._stopping or (self._burst and code == 0):
                return
            failures = 0 if time.monotonic() - began >= HEALTHY_RUN else failures + 1
            delay = backoff(failures)
            log.warning("worker process %d ended (%s); restarting in %.1fs",
                        slot, describe_exit(code), delay)  # fmt: skip
            with anyio.move_on_after(delay):
                if self._stopped is not None:
                    await self._stopped.wait()

    async def _run_child(self, slot: int) -> int:
        env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
        proc = await anyio.open_process(
            self._argv, stdin=subprocess.DEVNULL, stdout=None, stderr=None, env=env,
            start_new_session=True,
        )  # fmt: skip
        self._children[slot] = proc
        log.info("worker process %d started (pid %d)", slot, proc.pid)
        try:
            return await proc.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await _end(proc)
            self._children.pop(slot, None)


async def _end(proc: Process) -> None:
    """Make sure a child is gone when its slot is abandoned: SIGTERM, then SIGKILL."""
    if proc.returncode is not None:
        return
    proc.terminate()
    with anyio.move_on_after(30):
        await proc.wait()
        return
    proc.kill()
    await proc.wait()


def child_argv(worker_args: Sequence[str]) -> list[str]:
    """The command line of one supervised child: this interpreter, one process."""
    return [sys.executable, "-m", "streamjobs", "worker", *worker_args, "--processes", "1"]
