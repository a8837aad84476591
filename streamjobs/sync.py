"""Blocking access to a queue for code without an event loop: web views, scripts, schedulers.

`SyncJobClient` submits and inspects jobs from plain threads; the workers run elsewhere (an
async app's `JobService`, or `streamjobs worker` processes). It shares everything but the I/O
with the async side: validation and encoding (`_codec`), the key schema and script arguments
(`RedisJobQueue`), the Lua scripts, and the decoders of records, dead letters and metrics. One
client is safe to share between threads: redis-py's connection pool lends each call its own
connection, and the client keeps no other state.

    with SyncJobClient("redis://localhost:6379/0") as jobs:
        job_id = jobs.submit_job("process_media", args=(42,), kwargs={"quality": "high"})
        print(jobs.wait_for_result(job_id, timeout=30).result)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

from . import _codec
from ._metrics import metrics_from
from ._scripts import script
from .async_worker import Timings
from .errors import JobNotFoundError
from .models import CancelOutcome, DedupeMode, JobDefinition, JobPriority, JobResult, JobStatus
from .redis_queue import (
    CONTROL_TTL_MS,
    RedisJobQueue,
    cancel_outcome,
    deduped_id,
    enqueued,
    submitted,
)

__all__ = ["SyncJobClient"]

#: Longest single block on the events stream before the record is read again (seconds).
_RECHECK = 1.0


class SyncJobClient:
    """Submit jobs and read back their status, results, dead letters and metrics, blocking.

    Takes the same queue settings as `JobService` (`redis_url`, defaulting to `$REDIS_URL`,
    then `redis://localhost:6379/0`; `key_prefix`; `name`), or a `queue` to copy them from.
    `timings` must match the workers' for the worker counts in `get_metrics()` (default
    `Timings()`, as `JobService` uses).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        queue: RedisJobQueue | None = None,
        key_prefix: str = "streamjobs:",
        name: str = "default",
        timings: Timings | None = None,
    ) -> None:
        self._queue = queue or RedisJobQueue(redis_url, key_prefix, name=name)
        self._timings = timings or Timings()
        self._driver = self._queue.sync_driver()

    @property
    def queue(self) -> RedisJobQueue:
        """The queue's settings and key schema (never connected: this client does the I/O)."""
        return self._queue

    def close(self) -> None:
        """Close the connections (idempotent)."""
        self._driver.close()

    def __enter__(self) -> SyncJobClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def _run(self, name: str, *args: Any) -> Any:
        """Run one transition script with the queue's common arguments, as the queue does."""
        keys = self._queue.keys
        return self._driver.eval(script(name), keys.all, self._queue.script_args(*args))

    # -- submitting -----------------------------------------------------------------------

    def submit_job(
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
    ) -> str:
        """Queue a job and return its id, exactly as `JobService.submit_job` does: invalid
        input raises InvalidJobError naming the field and writes nothing; a `job_id` that
        already has a record enqueues nothing; with a `dedupe_key`, the id returned is that
        of the job standing for the key."""
        job = _codec.new_job(
            handler, args, kwargs,
            priority=priority, timeout=timeout, max_retries=max_retries, retry_delay=retry_delay,
            retry_backoff=retry_backoff, job_id=job_id, delay=delay,
            max_payload=self._queue.max_payload, dedupe_key=dedupe_key, dedupe_for=dedupe_for,
            dedupe_mode=dedupe_mode,
        )  # fmt: skip
        if self._queue.observers:
            [job_id] = self._submit_observed([job])
            return job_id
        if job.dedupe is not None:
            call = self._queue.enqueue_deduped_call(job)
            keys = self._queue.keys.deduping
            return deduped_id(self._driver.eval(script("enqueue_deduped"), keys, call))
        keys = self._queue.keys.all
        [call] = self._queue.enqueue_calls([job])
        self._driver.eval(script("enqueue"), keys, call)
        return job.id

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue many jobs in one round trip; each mapping takes submit_job's keywords
        (`handler` included). All are validated before anything is written. Every job gets
        its id before sending; a failure after some were written raises PartialSubmitError
        with the ids written and not, as `JobService.submit_many` does."""
        specs = _codec.new_jobs(jobs, self._queue.max_payload)
        if specs and self._queue.observers:
            return self._submit_observed(specs)
        return self._write(specs)

    def _write(self, specs: Sequence[_codec.NewJob]) -> list[str]:
        """Write jobs, those with a dedupe key one script call each (pipelined); the ids
        standing for them, in order."""
        plain = [job for job in specs if job.dedupe is None]
        if plain:
            calls = self._queue.enqueue_calls(plain)
            enqueued(plain, self._driver.eval_many(script("enqueue"), self._queue.keys.all, calls))
        if len(plain) == len(specs):
            return [job.id for job in specs]
        deduped = [job for job in specs if job.dedupe is not None]
        calls = [self._queue.enqueue_deduped_call(job) for job in deduped]
        keys = self._queue.keys.deduping
        replies = self._driver.eval_many(script("enqueue_deduped"), keys, calls)
        return submitted(specs, plain, deduped, replies)

    def _submit_observed(self, specs: list[_codec.NewJob]) -> list[str]:
        """Write jobs as the observers see fit (a trace's context added to each, say)."""
        with self._queue.observers.submitting(specs) as observed:
            return self._write(observed)

    def cancel_job(self, job_id: str) -> CancelOutcome:
        """Cancel a job, as `JobService.cancel_job` does: CANCELLED before it started,
        REQUESTED while it runs (it ends CANCELLED, its worker stops it), NOTHING when it is
        finished or unknown; true unless NOTHING."""
        return cancel_outcome(self._run("cancel", job_id, CONTROL_TTL_MS))

    def retry_dead_letter(self, job_id: str) -> bool:
        """Queue a dead-lettered job again with fresh attempts; False when it is not one."""
        return bool(self._run("retry_dead_letter", job_id))

    # -- reading back ---------------------------------------------------------------------

    def get_job_status(self, job_id: str) -> JobStatus | None:
        """The job's status, or None when unknown (or its record expired)."""
        raw = self._driver.hget(self._queue.keys.job(job_id), "status")
        return JobStatus(raw) if raw else None

    def get_job_result(self, job_id: str) -> JobResult | None:
        """The job's outcome once terminal; None before, or when unknown."""
        record = _codec.with_id(job_id, self._driver.hgetall(self._queue.keys.job(job_id)))
        return _codec.result(record) if record else None

    def get_job(self, job_id: str) -> JobDefinition | None:
        """The job's definition and state, or None when unknown."""
        record = _codec.with_id(job_id, self._driver.hgetall(self._queue.keys.job(job_id)))
        return _codec.definition(record) if record else None

    def wait_for_result(self, job_id: str, timeout: float | None = None) -> JobResult:
        """Block until the job is terminal and return its result; TimeoutError past `timeout`
        seconds; JobNotFoundError at once when no record exists for the id (never submitted,
        or its result expired). Blocks on the events stream (no polling), re-reading the job's
        record when an event names it, and at least every second."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = self._last_event_id()  # before the record is read: no event is missed
        while True:
            record = _codec.with_id(job_id, self._driver.hgetall(self._queue.keys.job(job_id)))
            if not record:
                raise JobNotFoundError(job_id)
            result = _codec.result(record)
            if result is not None:
                return result
            left = _RECHECK if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} did not finish within {timeout:g}s")
            last = self._wait_event(job_id, last, min(left, _RECHECK))

    def _last_event_id(self) -> str:
        newest = self._driver.stream_range(self._queue.keys.events, 1, reverse=True)
        return newest[0][0] if newest else "0-0"

    def _wait_event(self, job_id: str, last: str, wait: float) -> str:
        """Follow the events stream for up to `wait` seconds, returning early once an event
        names the job; returns the last event id read."""
        until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0:
            block_ms = max(1, int(left * 1000))
            events = self._driver.read_stream(self._queue.keys.events, last, 500, block_ms)
            if not events:
                break
            last = events[-1][0]
            if any(fields.get("job_id") == job_id for _, fields in events):
                break
        return last

    def get_dead_letters(self, limit: int = 100) -> list[JobDefinition]:
        """The newest dead letters (each with `.error` and `.attempts`), newest first."""
        entries = self._driver.stream_range(self._queue.keys.dead, limit, reverse=True)
        return [_codec.dead_letter(entry, fields) for entry, fields in entries]

    def get_metrics(self) -> dict[str, Any]:
        """Queue depth by state and priority, lifetime counters, and worker counts: the same
        shape as `JobService.get_metrics()`."""
        ttl_ms = int(self._timings.registry_ttl * 1000)
        return metrics_from(list(self._run("metrics", ttl_ms)), self._timings)
