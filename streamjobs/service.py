"""The service layer: the public facade of the contract (`JobService`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import timedelta
from functools import partial
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from . import _codec
from ._drivers._replicas import DEFAULT_WAIT_TIMEOUT
from ._metrics import metrics_from, workers_from
from ._runner import Handler
from ._service_schedules import ScheduleCalls
from .async_worker import AsyncWorkerPool, Timings

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup
from ._replies import entry_order, gather
from .errors import ConfigurationError, JobNotFoundError
from .events import EventBus
from .models import (
    CancelOutcome,
    DedupeMode,
    DependencyFailure,
    JobDefinition,
    JobPriority,
    JobProgress,
    JobResult,
    JobStatus,
    LimitInfo,
    WorkerInfo,
)
from .redis_queue import RedisJobQueue

#: How often `events()` looks at the partitions' streams when there were none (seconds).
POLL = 0.25


class JobService(ScheduleCalls):
    """Submit jobs, run workers and read back status, results, dead letters and metrics.

    `partitions=N` splits the queue into N partitions (see `RedisJobQueue`): reads span them
    all, calls about one job go to its partition, and the workers serve every partition."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        queue: RedisJobQueue | None = None,
        worker_pool: AsyncWorkerPool | None = None,
        event_bus: EventBus | None = None,
        key_prefix: str = "streamjobs:",
        name: str = "default",
        timings: Timings | None = None,
        partitions: int | None = None,
        trace_parent: str | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        if queue is None:
            if worker_pool is not None:
                queue = worker_pool.queue
            else:
                queue = RedisJobQueue(
                    redis_url, key_prefix, name=name, partitions=partitions,
                    wait_replicas=wait_replicas, wait_timeout=wait_timeout,
                )  # fmt: skip
        if worker_pool is None:
            worker_pool = AsyncWorkerPool(queue, timings=timings)
        elif worker_pool.queue is not queue:
            raise ConfigurationError("worker_pool must be built on the same queue as the service")
        if event_bus is not None:
            worker_pool.event_bus = event_bus
        self._queue, self._workers = queue, worker_pool
        if trace_parent is not None:  # see streamjobs.tracing
            queue.observers.nest_traces(trace_parent)
        self._tg: TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._host: asyncio.Task[None] | None = None

    @property
    def queue(self) -> RedisJobQueue:
        """The queue this service submits to."""
        return self._queue

    @property
    def worker_pool(self) -> AsyncWorkerPool:
        """The in-process worker pool."""
        return self._workers

    # -- lifetime -------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect to Redis and check it (reachable, version 6.2 or newer)."""
        await self._queue.connect()

    async def close(self) -> None:
        """Stop in-process workers gracefully and close connections."""
        await self.stop_workers(graceful=True)
        if self._host is not None:
            self._host.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._host
            self._host, self._tg = None, None
        await self._queue.close()

    async def __aenter__(self) -> JobService:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await self.initialize()
            stack.push_async_callback(self._queue.close)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(self.stop_workers)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        stack, self._stack = self._stack, None
        self._tg = None
        if stack is None:
            return
        try:
            await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The body ran inside the service's task group, which wraps what it raised:
            # let the body's own exception through as itself.
            if exc is None or len(group.exceptions) != 1 or group.exceptions[0] is not exc:
                raise

    # -- handlers and submitting ----------------------------------------------------------

    def register_handler(self, name: str, fn: Handler) -> None:
        """Make `fn` (async, or plain def run in a thread) run jobs submitted as `name`."""
        self._workers.register_handler(name, fn)

    async def submit_job(
        self,
        handler: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        priority: JobPriority | int | str = JobPriority.NORMAL,
        timeout: float | None = 300,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        *,
        job_id: str | None = None,
        delay: float | None = None,
        dedupe_key: str | None = None,
        dedupe_for: float | timedelta | None = None,
        dedupe_mode: DedupeMode | None = None,
        partition_key: str | None = None,
        limit_key: str | None = None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyFailure | None = None,
    ) -> str:
        """Queue a job and return its id; a `job_id` that already has a record enqueues
        nothing. Invalid input raises InvalidJobError, naming the field, and writes nothing.

        With `depends_on` (job ids), the job waits (WAITING) until every one of them has
        COMPLETED, then is queued with its own priority and delay, and its handler finds
        their results in `job.dependency_results`. When one ends FAILED, DEAD_LETTER or
        CANCELLED, `on_dependency_failure` "cancel" (the default) cancels this job (and
        whatever waits for it) with an error naming the dependency; "run" runs it anyway.
        An id without a record raises InvalidJobError, writing nothing. With many
        partitions, the job joins its dependencies' partition (they must share one).

        With `dedupe_key`, the job is queued unless the key's job stands for it, and the id
        returned is that of the job that does. `dedupe_mode`: "until_done" (default: while
        the key's job is not finished, within `dedupe_for` seconds when given), "throttle"
        (one job per key per `dedupe_for` seconds), "debounce" (the job waits `dedupe_for`
        seconds; a submit meanwhile replaces its arguments and pushes its start back by
        `dedupe_for`: the last submit wins). The check and the write are one atomic step.

        With many partitions, jobs sharing a `partition_key` share a partition (a `job_id`
        decides its own; else a `dedupe_key` picks it; none: jobs are spread evenly); with
        one, it is ignored.

        `limit_key` names the limit the job counts against (see `set_limit`; its handler's
        name when not given) and makes it a tenant of fair service: keyed jobs of one
        priority start round-robin over their keys. With many partitions it decides the
        job's partition, so that one partition enforces the key's limit."""
        if limit_key is not None and job_id is None and not depends_on:
            partition_key = limit_key  # a limit holds in one partition: its key's
        if partition_key is not None or self._queue.partition_count > 1:
            job_id = self._queue.place(job_id, partition_key, dedupe_key, depends_on)
        job = _codec.new_job(
            handler, args, kwargs,
            priority=priority, timeout=timeout, max_retries=max_retries, retry_delay=retry_delay,
            retry_backoff=retry_backoff, job_id=job_id, delay=delay,
            max_payload=self._queue.max_payload, dedupe_key=dedupe_key, dedupe_for=dedupe_for,
            dedupe_mode=dedupe_mode, limit_key=limit_key, depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )  # fmt: skip
        if self._queue.observers:
            [job_id] = await self._submit_observed([job])
            return job_id
        if job.depends_on:
            await self._queue.enqueue_dependent([job])
            return job.id
        if job.dedupe is not None:
            return await self._queue.enqueue_deduped(job)
        await self._queue.enqueue(job)
        return job.id

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue many jobs in one round trip; each mapping takes submit_job's keywords
        (`handler` included). All are validated, and given their ids, before anything is
        written. Jobs go out in chunks of 200, each written whole or not at all: when a chunk
        fails after others were written, PartialSubmitError carries the ids written and not,
        and submitting the same jobs again with the same ids finishes the job safely. A job
        with a `dedupe_key` gets the id of the job that stands for it, as in submit_job."""
        q = self._queue
        specs = _codec.new_jobs(jobs, q.max_payload, q.place, q.partition_count > 1)
        if not specs:
            return []
        if q.observers:
            return await self._submit_observed(specs)
        return await self._queue.submit(specs)

    async def submit_chain(self, steps: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue jobs that run one after another: each step (a mapping of submit_job's
        keywords, as submit_many takes) waits for the one before it to complete and finds
        its result in `job.dependency_results`; a step that fails cancels the steps after
        it (unless one says `on_dependency_failure="run"`). Returns the ids, in order. The
        whole chain is written in one script call, all or nothing."""
        steps = list(steps)
        jobs = self._queue.flow_jobs(steps, [[i - 1] if i else [] for i in range(len(steps))])
        return await self._submit_flow(jobs)

    async def submit_group(
        self, jobs: Iterable[Mapping[str, Any]], then: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Queue jobs that run in parallel and, with `then`, one job that runs once all of
        them completed, with all their results in `job.dependency_results`. Returns the
        ids, `then`'s last. Written in one script call, all or nothing."""
        steps: list[Any] = list(jobs)
        after: list[list[int]] = [[] for _ in steps]
        if then is not None:
            after.append(list(range(len(steps))))
            steps.append(then)
        return await self._submit_flow(self._queue.flow_jobs(steps, after))

    async def _submit_flow(self, jobs: list[_codec.NewJob]) -> list[str]:
        if not jobs:
            return []
        if self._queue.observers:
            with self._queue.observers.submitting(jobs) as observed:
                await self._queue.enqueue_dependent(observed)
        else:
            await self._queue.enqueue_dependent(jobs)
        return [job.id for job in jobs]

    async def _submit_observed(self, specs: list[_codec.NewJob]) -> list[str]:
        """Write jobs as the observers see fit (a trace's context added to each, say)."""
        with self._queue.observers.submitting(specs) as observed:
            return await self._queue.submit(observed)

    async def set_limit(
        self, key: str, *, concurrency: int | None = None, rate: str | None = None
    ) -> None:
        """Limit the jobs of a limit key (a job's `limit_key`, else its handler's name) in
        every pool and process: at most `concurrency` running at once, at most `rate` starts
        ("100/s", "600/m", "10000/h") in any window of that period. A job with no room waits
        outside the streams, its attempts untouched, until a slot frees or the window moves.
        Setting it again replaces it. Bad input raises ConfigurationError, writing nothing.

        With many partitions the limit is written to each; jobs with an explicit
        `limit_key` all live in that key's partition, which enforces it exactly. Jobs
        limited by their handler's name are spread over the partitions, each holding the
        limit on its own: give them `limit_key=<handler>` for one cap over the queue."""
        await self._queue.set_limit(key, concurrency, rate)

    async def remove_limit(self, key: str) -> bool:
        """Drop a key's limit; its waiting jobs are queued at once. False when it had none."""
        return await self._queue.remove_limit(key)

    async def get_limits(self) -> list[LimitInfo]:
        """Every limit set, with its running and waiting jobs and what holds them back."""
        return await self._queue.get_limits()

    async def cancel_job(self, job_id: str) -> CancelOutcome:
        """Cancel a job, from any process. Before it started (pending, scheduled, waiting to
        retry): CANCELLED, it never runs. While it runs: REQUESTED; it ends CANCELLED at
        once, never retried, and the worker holding it cancels its handler within a second
        (a plain `def` handler gets JobCancelled from its next progress_callback call); its
        late result is refused. NOTHING when it is finished or unknown. The answer is true
        unless NOTHING, so `if await svc.cancel_job(job_id):` tells whether it was cancelled."""
        return await self._queue.cancel(job_id)

    # -- reading back ---------------------------------------------------------------------

    async def get_job_status(self, job_id: str) -> JobStatus | None:
        """The job's status, or None when unknown (or its record expired)."""
        return await self._queue.status(job_id)

    async def get_job_result(self, job_id: str) -> JobResult | None:
        """The job's outcome once terminal; None before, or when unknown."""
        record = await self._queue.record(job_id)
        return _codec.result(record) if record else None

    async def get_job(self, job_id: str) -> JobDefinition | None:
        """The job's definition and state, or None when unknown."""
        record = await self._queue.record(job_id)
        return _codec.definition(record) if record else None

    async def get_job_progress(self, job_id: str) -> JobProgress | None:
        """The last progress the job reported (current, total, message), or None."""
        record = await self._queue.record(job_id)
        return _codec.progress(record) if record else None

    async def wait_for_result(self, job_id: str, timeout: float | None = None) -> JobResult:
        """Wait until the job is terminal and return its result (TimeoutError past `timeout`);
        JobNotFoundError at once when no record exists for the id (never submitted, or its
        result expired), or once it vanishes while waited for. Blocks on the events stream,
        reading the record again when an event names the job, and at least every second (as
        the sync client does). The stream position is taken before the record is read, so
        no event between the two is missed."""
        p = self._queue.partition_of(job_id)  # its events are its partition's
        with anyio.fail_after(timeout):
            last = await self._queue.last_event_id(p)
            result = await self._terminal_result(job_id)
            while result is None:
                events = await self._queue.read_events(last, 500, block_ms=1000, partition=p)
                last = events[-1][0] if events else last
                if not events or any(f.get("job_id") == job_id for _, f in events):
                    result = await self._terminal_result(job_id)
            return result

    async def _terminal_result(self, job_id: str) -> JobResult | None:
        """The job's result once terminal, None before; JobNotFoundError without a record."""
        record = await self._queue.record(job_id)
        if not record:
            raise JobNotFoundError(job_id)
        return _codec.result(record)

    async def events(self, since: str = "$") -> AsyncIterator[dict[str, Any]]:
        """Follow the events stream ("$": only new events; "0": from the oldest kept). With
        many partitions, every partition's stream is read in turn (no task group held across
        a yield): their events come merged in id order per pass, each with its `partition`,
        within about half a second of happening."""
        q = self._queue
        if q.partition_count == 1:
            last = since if since != "$" else await q.last_event_id()
            while True:
                for entry, fields in await q.read_events(last, 100, block_ms=5000):
                    last = entry
                    yield {"id": entry, **fields}
        n = q.partition_count
        if since == "$":
            lasts = list(await gather([partial(q.last_event_id, p) for p in range(n)]))
        else:
            lasts = [since] * n
        while True:
            reads = await gather(
                [partial(q.read_events, lasts[p], 100, partition=p) for p in range(n)]
            )
            merged = []
            for p, events in enumerate(reads):
                if events:
                    lasts[p] = events[-1][0]
                merged += [(entry, p, fields) for entry, fields in events]
            if not merged:
                await anyio.sleep(POLL)
                continue
            merged.sort(key=lambda item: entry_order(item[0]))
            for entry, p, fields in merged:
                yield {"id": entry, "partition": p, **fields}

    async def get_dead_letters(self, limit: int = 100) -> list[JobDefinition]:
        """The newest dead letters (each with `.error` and `.attempts`), newest first."""
        return await self._queue.dead_letters(limit)

    async def retry_dead_letter(self, job_id: str) -> bool:
        """Queue a dead-lettered job again with fresh attempts; False when it is not one."""
        return await self._queue.retry_dead_letter(job_id)

    async def purge_dead_letters(self, limit: int = 1000) -> tuple[int, int]:
        """Delete up to `limit` of the oldest dead letters for good; returns (purged, left)."""
        return await self._queue.purge_dead_letters(limit)

    async def get_workers(self) -> list[WorkerInfo]:
        """Every worker on this queue, across processes, from the heartbeat registry."""
        await self._workers.beat()
        snapshot = await self._queue.snapshot(self._workers.timings.registry_ttl)
        return workers_from(snapshot, self._workers.timings)

    async def get_metrics(self) -> dict[str, Any]:
        """Queue depth by state and priority, lifetime counters, and worker counts."""
        await self._workers.beat()
        snapshot = await self._queue.snapshot(self._workers.timings.registry_ttl)
        return metrics_from(snapshot, self._workers.timings)

    # -- workers --------------------------------------------------------------------------

    async def run_workers(
        self, count: int | None = None, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the in-process worker pool in the caller's task group until stopped:
        `await tg.start(svc.run_workers, 4)`."""
        await self._queue.connect()
        await self._workers.run(count, task_status=task_status)

    async def start_workers(self, count: int | None = None) -> None:
        """Start the in-process workers in the background (`$JOB_WORKER_COUNT`, else CPUs)."""
        if self._workers.running:
            if count is not None:
                await self._workers.scale(count)
            return
        tg = self._tg or await self._asyncio_host()
        await tg.start(self.run_workers, count)

    async def scale_workers(self, count: int) -> None:
        """Grow or shrink the in-process workers to `count`; before `start_workers()`, set the
        count it starts with (unless it is given one)."""
        await self._workers.scale(count)

    async def stop_workers(self, graceful: bool = True, grace: float | None = None) -> None:
        """Stop the in-process workers: running jobs finish (graceful; within `grace` seconds
        when given, then the rest go back to the queue) or go back to the queue at once. A
        call while a stop is under way can hasten it (graceful=False, or a shorter grace)."""
        await self._workers.stop(graceful, grace)

    async def _asyncio_host(self) -> TaskGroup:
        """The one adapter for the guide's `initialize()` + `start_workers()` style: a task
        group hosted by a background task, which only asyncio allows."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "start_workers() outside `async with JobService(...)` works under asyncio only; "
                "under trio use `async with JobService(...) as svc:` or "
                "`await nursery.start(svc.run_workers, n)`"
            ) from None
        ready: asyncio.Future[TaskGroup] = loop.create_future()
        self._host = loop.create_task(self._hold_task_group(ready))
        return await ready

    async def _hold_task_group(self, ready: asyncio.Future[TaskGroup]) -> None:
        async with anyio.create_task_group() as tg:
            ready.set_result(tg)
            await anyio.sleep_forever()
