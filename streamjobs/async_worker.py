"""The worker layer: a pool of workers that reads, leases, runs and settles jobs.

An intake (`_intake`) takes only as many jobs as the pool has idle workers, lapsed leases
first, then the highest priority waiting, and blocks when none waits. A promoter moves due
delayed jobs; a scheduler fires due schedules (every pool does, each tick once); a canceller
stops jobs cancelled while running; a thread keeps leases fresh; heartbeats feed the registry
behind `get_workers()`. Everything lives in the pool's task group.

Every pool serves every partition of a partitioned queue: it registers in each partition's
registry, reclaims, promotes, reaps and hears of cancels in each, and its intake keeps
priority across partitions. Schedules live in partition 0.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from . import _canceller, _codec, _promoter, _reaper, _scheduler
from ._backoff import pause
from ._drivers import library_pinned
from ._heartbeat import Heartbeat
from ._intake import Intake
from ._lease import LeaseKeeper
from ._observe import Attempts, observed
from ._outcome import Outcome, Verdict
from ._publisher import FLUSH_GRACE, EventPublisher
from ._recorder import CompletionRecorder
from ._runner import Completed, Handler, ProgressCallback, deadline, execute, timed_out
from ._slots import Inbox, Slots, Worker
from ._threads import HandlerThreads
from ._timeouts import TimeoutWatch
from ._timings import Timings, default_worker_count
from .errors import ConfigurationError, JobCancelled, StreamJobsError
from .events import EventBus
from .redis_queue import Delivery, LeaseLostError, RedisJobQueue

log = logging.getLogger("streamjobs.worker")

__all__ = ["AsyncWorkerPool", "Timings", "default_worker_count"]

#: Ids of cancelled jobs a pool keeps in mind at most: those it held leave as their worker
#: ends them; the rest (a job that finished just before) are forgotten oldest first.
_CANCELLED_KEPT = 1000


def _event(d: Delivery, **extra: Any) -> dict[str, Any]:
    handler = d.job.handler if d.job else d.record.get("handler", "")
    return {"job_id": d.job_id, "handler": handler, "attempt": int(d.attempt), **extra}


class AsyncWorkerPool:
    """Workers on one queue; `run()` serves until `stop()`, in the caller's task group."""

    def __init__(
        self,
        queue: RedisJobQueue,
        handlers: Mapping[str, Handler] | None = None,
        *,
        timings: Timings | None = None,
        event_bus: EventBus | None = None,
    ) -> None:
        self.queue = queue
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.timings = timings or Timings()
        self.event_bus = event_bus
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._slots = Slots(self.id)
        self._recorder = CompletionRecorder(queue, self._recorded, 0)
        self._publisher = EventPublisher()
        self._threads = HandlerThreads()
        self._keeper = LeaseKeeper(queue, self.id, 0)
        self._tg: TaskGroup | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._timeouts = TimeoutWatch(self._expire)
        self._abandoned: set[str] = set()  # lease lost, or handed back by an immediate stop
        self._cancelled: dict[str, None] = {}  # ended by cancel_job: stop them, record nothing
        self._intake: Intake | None = None  # made at run(): it reads the timings then
        self._heartbeat = self._new_heartbeat()
        self._started_at = time.time()
        self._stop_requested: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._graceful: bool = True
        self._grace: float | None = None
        self._grace_scope: anyio.CancelScope | None = None  # a graceful stop's wait
        self._size: int | None = None  # the count scale() asked for: run() starts with it

    def register_handler(self, name: str, fn: Handler) -> None:
        """Make `fn` run jobs submitted under `name`."""
        if not callable(fn):
            raise ConfigurationError(f"handler {name!r} must be callable")
        self.handlers[name] = fn

    @property
    def running(self) -> bool:
        """True between `run()` starting and finishing."""
        return self._done is not None and not self._done.is_set()

    @property
    def events_dropped(self) -> int:
        """Events the event bus lost by falling behind, since this pool was made."""
        return self._publisher.dropped

    @property
    def workers(self) -> list[Worker]:
        """This pool's workers as they are now."""
        return self._slots.listed

    async def scale(self, count: int) -> None:
        """Grow or shrink to `count` workers; busy surplus workers finish their job first.
        Before `run()`, sets the count it starts with when it is given none."""
        if count < 1:
            raise ConfigurationError(f"worker count must be at least 1, not {count}")
        self._size = count
        if self.running:
            for worker in self._slots.resize(count):
                self._start_worker(worker)
            self._threads.resize(count)
            await self.beat()

    async def stop(self, graceful: bool = True, grace: float | None = None) -> None:
        """Stop taking jobs; graceful lets running jobs finish (within `grace` seconds when
        given), otherwise they are handed back to the queue at once. Returns once stopped.
        Called while a stop is under way, it can only hasten it: an immediate stop, or a
        shorter grace, cuts the wait for running jobs short."""
        if not self.running or self._stop_requested is None or self._done is None:
            return
        if not self._stop_requested.is_set():
            self._graceful, self._grace = graceful, grace
            self._stop_requested.set()
        elif not graceful or grace is not None:
            self._hasten(grace if graceful and grace is not None else 0.0)
        await self._done.wait()

    def _hasten(self, grace: float) -> None:
        """Shorten the wait of a graceful stop under way to `grace` seconds from now."""
        self._grace = grace if self._grace is None else min(self._grace, grace)
        if self._grace_scope is not None:
            due = anyio.current_time() + grace
            self._grace_scope.deadline = min(self._grace_scope.deadline, due)

    async def run(
        self, count: int | None = None, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve jobs with `count` workers until `stop()`; started once registered and reading."""
        if self.running:
            raise ConfigurationError("this worker pool is already running")
        self._stop_requested, self._done = anyio.Event(), anyio.Event()
        size = count or self._size or default_worker_count()
        self._slots.resize(size)
        self._threads.open(size)
        t = self.timings  # read at start: the CLI may set timings after construction
        self._recorder = CompletionRecorder(self.queue, self._recorded, t.settle_deadline)
        self._keeper = LeaseKeeper(self.queue, self.id, t.lease / 3)
        self._publisher.bus = self.event_bus  # read at start, as the timings are
        self._heartbeat = self._new_heartbeat()
        self._intake = Intake(self.queue, self.id, t, self._slots, self._keeper)
        try:
            with library_pinned():
                await self._serve(task_status)
        finally:
            self._slots.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._leave()
            self._done.set()

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        """The pool's task group: its services and workers, until a stop has drained it."""
        assert self._stop_requested is not None and self._intake is not None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._heartbeat.beat()
            await tg.start(self._heartbeat.run)
            await tg.start(self._publisher.run)
            await tg.start(self._recorder.run)
            await tg.start(_reaper.run, self.queue, self.timings.reap_interval)
            n = self.queue.partition_count
            for p in range(n):
                promote = partial(_promoter.run, self.queue, self.timings.max_promote_sleep)
                await tg.start(partial(promote, partition=p))
                await tg.start(partial(_canceller.run, self.queue, self.id, self._cancel,
                                       partition=p))  # fmt: skip
                if n > 1:
                    tg.start_soon(self._intake.watch_ready, p)
            await tg.start(_scheduler.run, self.queue)
            tg.start_soon(self._keeper.run, self._lease_lost)
            tg.start_soon(self._timeouts.run)
            for worker in self._slots.workers:
                self._start_worker(worker)
            intake = anyio.CancelScope()
            tg.start_soon(self._serve_intake, intake)
            task_status.started()
            log.info("pool %s started with %d workers", self.id, len(self._slots.workers))
            await self._stop_requested.wait()
            intake.cancel()
            await self._drain()
            with anyio.move_on_after(FLUSH_GRACE):  # a hanging bus never holds up a stop
                await self._publisher.wait_flushed()
            tg.cancel_scope.cancel()

    def _start_worker(self, worker: Worker) -> None:
        assert self._tg is not None
        with library_pinned():  # scale() starts workers from its caller's context
            self._tg.start_soon(self._work, worker, self._slots.open_inbox(worker))

    async def _work(self, worker: Worker, inbox: Inbox) -> None:
        """One worker: run the jobs handed to it, one at a time, until its inbox closes.
        One cancel scope serves job after job and is renewed only after a timeout or a lost
        lease cancelled it: a scope per job would cost more than a no-op job itself."""
        while not inbox.exhausted:
            with anyio.CancelScope() as scope:
                async for d in inbox:
                    await self._run_job(worker, d, scope)
                    if scope.cancel_called:
                        break

    async def _serve_intake(self, intake: anyio.CancelScope) -> None:
        assert self._intake is not None
        with intake:
            await self._intake.run()

    async def _drain(self) -> None:
        """Stop the intake, then let running jobs finish or cancel them (handed back later)."""
        if self._graceful:
            grace = math.inf if self._grace is None else self._grace
            self._grace_scope = anyio.move_on_after(grace)
            with self._grace_scope:
                await self._slots.wait_all_idle()
            self._grace_scope = None
        for job_id in list(self._scopes):
            self._abandon(job_id)
        with anyio.move_on_after(self.timings.settle_deadline + 5):
            await self._slots.wait_all_idle()
            await self._recorder.wait_idle()
        self._slots.close()

    async def _leave(self) -> None:
        try:
            handed = await self.queue.release(self.id)
            await self.queue.deregister(self.id)
        except StreamJobsError as exc:
            log.warning("pool %s could not deregister cleanly: %s", self.id, exc)
            return
        log.info("pool %s stopped; %d job(s) handed back", self.id, handed)

    # -- job control ------------------------------------------------------------------

    def _lease_lost(self, job_id: str) -> None:
        if job_id in self._scopes:
            log.warning("job %s: lease taken over by another worker; abandoning it", job_id)
            self._abandon(job_id)

    def _cancel(self, job_id: str) -> None:
        """cancel_job ended a job of this pool CANCELLED (cancel.lua settled it): stop its
        handler, recording nothing of its attempt. An async handler's scope is cancelled; a
        thread cannot be, so its handler gets JobCancelled from its next progress call while
        its worker waits for it; a job not started yet is skipped when its turn comes."""
        log.info("job %s cancelled while running: stopping it", job_id)
        self._keeper.drop(job_id)  # its entry is gone: the lease is not renewed, nor lost
        self._timeouts.forget(job_id)
        self._cancelled[job_id] = None
        if len(self._cancelled) > _CANCELLED_KEPT:  # ids of jobs this pool no longer held
            del self._cancelled[next(iter(self._cancelled))]
        if job_id in self._scopes and job_id not in self._threads.running:
            self._scopes[job_id].cancel()

    def _abandon(self, job_id: str) -> None:
        """Cancel a running job whose outcome this pool must not record."""
        self._abandoned.add(job_id)
        self._scopes[job_id].cancel()

    # -- one job --------------------------------------------------------------------------

    async def _run_job(self, worker: Worker, d: Delivery, scope: anyio.CancelScope) -> None:
        """Run one job in its worker's `scope`, which only this job's timeout or abandonment
        cancels while it runs, then hand its outcome on."""
        handed_over = False  # to the recorder, which then owns the lease
        attempt: Attempts | None = None  # what metrics and traces see of it
        try:
            log.info("job %s started (%s, attempt %s)", d.job_id, worker.id, d.attempt)
            if self.event_bus is not None:
                priority = d.job.priority.name.lower() if d.job else None
                payload = _event(d, worker=worker.id, priority=priority)
                self._publisher.emit("job.started", payload)
            handler = self.handlers.get(d.job.handler) if d.job else None
            self._scopes[d.job_id] = scope
            outcome: Completed | Outcome | None = None
            if self.queue.observers:
                attempt = self.queue.observers.attempt(d)
            try:
                outcome = await self._execute(d, handler, attempt)
            except anyio.get_cancelled_exc_class():
                if not scope.cancel_called:
                    raise  # the pool itself is being cancelled
                # this job's deadline passed, or it was abandoned: its outcome follows
            finally:
                self._scopes.pop(d.job_id, None)  # nothing cancels this job from here on
                self._timeouts.forget(d.job_id)
            if self._dropped(d):
                return
            if self._threads.overran and d.job_id in self._threads.overran:
                outcome = None  # its result came too late: the attempt timed out
            if scope.cancel_called:  # the scope stays cancelled: go on under a shield
                with anyio.CancelScope(shield=True):
                    handed_over = await self._conclude(worker, d, outcome, attempt)
            else:
                handed_over = await self._conclude(worker, d, outcome, attempt)
        finally:
            if attempt is not None and not attempt.done:  # abandoned, or handed back
                attempt.ended("released", None, None)
            self._abandoned.discard(d.job_id)
            self._cancelled.pop(d.job_id, None)
            self._threads.overran.discard(d.job_id)
            if not handed_over:
                self._keeper.drop(d.job_id)
            self._slots.finish(worker)

    def _dropped(self, d: Delivery) -> bool:
        """True when nothing of this attempt is to be recorded: it was abandoned (its lease
        lost, or handed back), or cancelled (cancel.lua settled it already)."""
        if d.job_id in self._abandoned:
            return True
        if self._cancelled and d.job_id in self._cancelled:
            self._publisher.emit("job.cancelled", _event(d, status="CANCELLED"))
            return True
        return False

    async def _execute(
        self, d: Delivery, handler: Handler | None, attempt: Attempts | None
    ) -> Completed | Outcome | None:
        """Run the handler, inside what the observers watch it by (a trace's span); None
        when the job was cancelled before it could start."""
        if self._cancelled and d.job_id in self._cancelled:
            return None
        if attempt is None:
            return await execute(d, handler, self._progress(d), self._threads, self._began)
        with attempt.running():
            return await execute(d, handler, self._progress(d), self._threads, self._began)

    async def _conclude(
        self, worker: Worker, d: Delivery, outcome: Completed | Outcome | None,
        attempt: Attempts | None,
    ) -> bool:  # fmt: skip
        """Hand a completion to the recorder (True: it owns the lease now), or settle any
        other outcome here; None is a job cancelled at its deadline."""
        if isinstance(outcome, Completed):
            if attempt is not None:
                attempt.ended("completed", None, None)
            await self._recorder.add(d, outcome.result_json, worker)
            return True
        outcome = outcome or timed_out(d)
        if attempt is not None:
            attempt.ended(*observed(outcome))
        worker.jobs_failed += await self._settle(d, outcome)
        return False

    def _began(self, d: Delivery, threaded: bool) -> None:
        """A handler starts running: its timeout runs from now. A thread may have been
        waited for, so a threaded job's lease is renewed from now as well."""
        self._timeouts.limit(d.job_id, deadline(d))
        if threaded and d.job is not None:
            self._keeper.hold(d, d.job.timeout, self.timings.lease)

    def _expire(self, job_id: str) -> None:
        """A job reached its timeout: cancel it, or, when a thread runs it (threads cannot be
        stopped), renew its lease until the thread returns; its worker waits for the thread,
        then records the timeout, so that its next attempt never runs beside it."""
        if (d := self._threads.overrun(job_id)) is None:
            self._scopes[job_id].cancel()
        else:
            self._keeper.hold(d, None, 0.0)

    async def _recorded(self, d: Delivery, worker: Worker, recorded: bool | None) -> None:
        """The recorder's word on a completion: the lease goes, the counters move."""
        self._keeper.drop(d.job_id)
        if recorded:
            worker.jobs_completed += 1
            log.info("job %s completed", d.job_id)
            if self.event_bus is not None:
                self._publisher.emit("job.completed", _event(d, status="COMPLETED"))
        elif recorded is False:
            log.warning("job %s: outcome refused, its lease passed on", d.job_id)
        else:
            log.error("job %s: outcome not recorded; it runs again after its lease", d.job_id)

    def _progress(self, d: Delivery) -> ProgressCallback:
        async def progress(current: Any = None, total: Any = None, message: Any = None) -> None:
            if self._cancelled and d.job_id in self._cancelled:
                raise JobCancelled(f"job {d.job_id} was cancelled")
            try:
                recorded = await self.queue.progress(d, current, total, message)
            except StreamJobsError as exc:
                log.warning("job %s: progress not recorded: %s", d.job_id, exc)
                return
            if recorded and self.event_bus is not None:
                payload = _event(d, current=current, total=total, message=message)
                self._publisher.emit("job.progress", payload)

        return progress

    async def _settle(self, d: Delivery, outcome: Outcome) -> bool:
        """Record how the attempt ended, retrying through Redis outages until the deadline;
        shielded, so that a stop or cancellation never loses an outcome."""
        failures = 0
        until = anyio.current_time() + self.timings.settle_deadline
        with anyio.CancelScope(shield=True, deadline=until):
            while True:
                try:
                    return await self._record(d, outcome)
                except LeaseLostError:
                    log.warning("job %s: outcome refused, its lease passed on", d.job_id)
                    return False
                except StreamJobsError as exc:
                    failures += 1
                    await pause(f"recording job {d.job_id}", exc, failures)
        log.error("job %s: outcome not recorded; it runs again once its lease lapses", d.job_id)
        return False

    async def _record(self, d: Delivery, outcome: Outcome) -> bool:
        """Record an unsuccessful attempt (retry, FAILED or dead letter); True once done."""
        error = outcome.error
        if outcome.verdict is Verdict.RETRY:
            await self.queue.retry(d, error, outcome.delay, outcome.traceback)
            log.info("job %s failed (%s); retry in %.3gs", d.job_id, error, outcome.delay)
            payload = _event(d, status="RETRYING", error=error, delay=outcome.delay)
            self._publisher.emit("job.retrying", payload)
            return True
        if outcome.verdict is Verdict.FAILED:
            await self.queue.fail(d, error, outcome.traceback)
            log.info("job %s failed for good: %s", d.job_id, error)
        else:
            await self.queue.dead_letter(d, error, outcome.reason, outcome.traceback)
            log.warning("job %s dead-lettered (%s): %s", d.job_id, outcome.reason, error)
        status = outcome.verdict.name
        self._publisher.emit("job.failed", _event(d, status=status, error=error))
        if outcome.verdict is Verdict.DEAD_LETTER:
            self._publisher.emit("job.dead_letter", _event(d, error=error))
        return True

    # -- registry -------------------------------------------------------------------------

    def _new_heartbeat(self) -> Heartbeat:
        t = self.timings
        return Heartbeat(self.queue, self.id, self._describe, t.heartbeat, t.registry_ttl)

    async def beat(self) -> None:
        """Publish this pool's state to the registry now (no-op unless running)."""
        if self.running:
            await self._heartbeat.beat()

    def _describe(self) -> dict[str, str]:
        """This pool's registry record (the heartbeat adds the loop's lag)."""
        workers = [w.as_record() for w in self._slots.listed]
        stopping = self._stop_requested is not None and self._stop_requested.is_set()
        return {
            "host": socket.gethostname(), "pid": str(os.getpid()),
            "started_at": str(self._started_at), "workers": _codec.dumps(workers),
            "state": "stopping" if stopping else "running",
            "heartbeat": str(self.timings.heartbeat),
            "unhealthy_lag": str(self.timings.unhealthy_lag),
            "lease": str(int(self.timings.lease * 1000)),  # reclaim.lua's floor: the shortest
            "events_dropped": str(self._publisher.dropped),
        }  # fmt: skip
