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

from . import _codec, _limits, _schedules
from ._drivers._replicas import DEFAULT_WAIT_TIMEOUT
from ._keys import QueueKeys
from ._metrics import metrics_from
from ._queue_submit import CONTROL_TTL_MS, ENQUEUE
from ._replies import (
    cancel_outcome,
    deduped_id,
    dependent_codes,
    enqueued_replicated,
    merge_snapshots,
    newest_first,
    replicated_anyway,
    submitted,
)
from ._schedules import ScheduleInfo
from ._scripts import script
from .async_worker import Timings
from .errors import JobNotFoundError, ReplicationError
from .models import (
    CancelOutcome,
    DedupeMode,
    DependencyFailure,
    JobDefinition,
    JobPriority,
    JobResult,
    JobStatus,
    LimitInfo,
)
from .redis_queue import RedisJobQueue

__all__ = ["SyncJobClient"]

#: Longest single block on the events stream before the record is read again (seconds).
_RECHECK = 1.0


class SyncJobClient:
    """Submit jobs and read back their status, results, dead letters and metrics, blocking.

    Takes the same queue settings as `JobService` (`redis_url`, defaulting to `$REDIS_URL`,
    then `redis://localhost:6379/0`; `key_prefix`; `name`; `partitions`, checked against the
    count recorded in Redis on first use), or a `queue` to copy them from.
    `timings` must match the workers' for the worker counts in `get_metrics()` (default
    `Timings()`, as `JobService` uses). `wait_replicas` / `wait_timeout`: as on
    `RedisJobQueue`, each change returns once that many replicas hold it, else
    ReplicationError.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        queue: RedisJobQueue | None = None,
        key_prefix: str = "streamjobs:",
        name: str = "default",
        timings: Timings | None = None,
        partitions: int | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        self._queue = queue or RedisJobQueue(
            redis_url, key_prefix, name=name, partitions=partitions, wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
        )
        self._timings = timings or Timings()
        self._driver = self._queue.sync_driver()
        self._agreed = False  # the partition count was checked against Redis

    def _parts(self) -> RedisJobQueue:
        """The queue, its partition count agreed with Redis (on first use: this client
        connects lazily); ConfigurationError when it differs from the recorded one."""
        if not self._agreed:
            keys, args = self._queue.record_partitions_call()
            try:
                recorded = self._driver.eval(script("record_partitions"), keys, args)
            except ReplicationError as exc:  # the count stands on the primary: use it
                recorded = replicated_anyway("record_partitions", exc)
            self._queue.adopt_partitions(recorded)
            self._agreed = True
        return self._queue

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

    def _run(self, name: str, *args: Any, keys: QueueKeys | None = None) -> Any:
        """Run one transition script with the queue's common arguments, as the queue does
        (on partition 0 unless `keys` says which)."""
        keys = keys or self._parts().keys
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
        partition_key: str | None = None,
        limit_key: str | None = None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyFailure | None = None,
    ) -> str:
        """Queue a job and return its id, exactly as `JobService.submit_job` does: invalid
        input raises InvalidJobError naming the field and writes nothing; a `job_id` that
        already has a record enqueues nothing; with a `dedupe_key`, the id returned is that
        of the job standing for the key; `partition_key`, `limit_key`, `depends_on` and
        `on_dependency_failure` as there."""
        q = self._parts()
        if limit_key is not None and job_id is None and not depends_on:
            partition_key = limit_key  # a limit holds in one partition: its key's
        if partition_key is not None or q.partition_count > 1:
            job_id = q.place(job_id, partition_key, dedupe_key, depends_on)
        job = _codec.new_job(
            handler, args, kwargs,
            priority=priority, timeout=timeout, max_retries=max_retries, retry_delay=retry_delay,
            retry_backoff=retry_backoff, job_id=job_id, delay=delay,
            max_payload=self._queue.max_payload, dedupe_key=dedupe_key, dedupe_for=dedupe_for,
            dedupe_mode=dedupe_mode, limit_key=limit_key, depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )  # fmt: skip
        if q.observers:
            [job_id] = self._submit_observed([job])
            return job_id
        if job.depends_on:
            self._write_dependent([job])
            return job.id
        if job.dedupe is not None:
            call = q.enqueue_deduped_call(job)
            keys = q.keys_of(job.id).deduping
            try:
                return deduped_id(self._driver.eval(script("enqueue_deduped"), keys, call))
            except ReplicationError as exc:
                raise exc.for_jobs([deduped_id(exc.reply)]) from None
        fair = job.limit_key is not None
        [call] = q.enqueue_calls([job], fair)
        try:
            self._driver.eval(script(ENQUEUE[fair]), q.keys_of(job.id).all, call)
        except ReplicationError as exc:
            raise exc.for_jobs([job.id]) from None
        return job.id

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue many jobs in one round trip; each mapping takes submit_job's keywords
        (`handler` included). All are validated before anything is written. Every job gets
        its id before sending; a failure after some were written raises PartialSubmitError
        with the ids written and not, as `JobService.submit_many` does."""
        q = self._parts()
        specs = _codec.new_jobs(jobs, q.max_payload, q.place, q.partition_count > 1)
        if specs and q.observers:
            return self._submit_observed(specs)
        return self._write(specs)

    def submit_chain(self, steps: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue jobs that run one after another, as `JobService.submit_chain` does; the
        ids, in order, written in one script call."""
        steps = list(steps)
        after = [[i - 1] if i else [] for i in range(len(steps))]
        return self._write_flow(self._parts().flow_jobs(steps, after))

    def submit_group(
        self, jobs: Iterable[Mapping[str, Any]], then: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Queue jobs that run in parallel and `then` once all completed, as
        `JobService.submit_group` does; the ids, `then`'s last."""
        steps: list[Any] = list(jobs)
        after: list[list[int]] = [[] for _ in steps]
        if then is not None:
            after.append(list(range(len(steps))))
            steps.append(then)
        return self._write_flow(self._parts().flow_jobs(steps, after))

    def _write_flow(self, jobs: list[_codec.NewJob]) -> list[str]:
        if not jobs:
            return []
        if self._queue.observers:
            with self._queue.observers.submitting(jobs) as observed:
                self._write_dependent(observed)
        else:
            self._write_dependent(jobs)
        return [job.id for job in jobs]

    def _write_dependent(self, jobs: Sequence[_codec.NewJob]) -> None:
        """One enqueue_dependent.lua call for jobs of one partition, all or nothing."""
        q = self._parts()
        keys = q.flow_partition(jobs)
        dependent_codes(self._driver.eval(script("enqueue_dependent"), keys.all,
                                          q.enqueue_dependent_call(jobs)))  # fmt: skip

    def _write(self, specs: Sequence[_codec.NewJob]) -> list[str]:
        """Write validated jobs: one pipeline of enqueue.lua chunks per partition, and those
        with a dedupe key one script call each, those with dependencies last (one call per
        partition); the ids standing for them, in order."""
        q = self._parts()
        if any(job.depends_on for job in specs):
            rest = [job for job in specs if not job.depends_on]
            standing = dict(zip([job.id for job in rest], self._write(rest) if rest else []))
            for group in q.dependent_groups([job for job in specs if job.depends_on]):
                self._write_dependent(group)
            return [standing.get(job.id, job.id) for job in specs]
        plain = [job for job in specs if job.dedupe is None]
        if plain:
            self._write_plain(q, plain)
        if len(plain) == len(specs):
            return [job.id for job in specs]
        deduped = [job for job in specs if job.dedupe is not None]
        batches = q.deduped_batches(deduped)
        sent = []
        for batch in batches:
            try:
                sent.append(self._driver.eval_many(script(batch.script), batch.keys, batch.calls))
            except ReplicationError as exc:  # each job, or the one standing for it, is written
                raise exc.for_jobs([job.id for job in specs]) from None
        return submitted(specs, plain, deduped, q.deduped_replies(deduped, batches, sent))

    def _write_plain(self, q: RedisJobQueue, specs: Sequence[_codec.NewJob]) -> None:
        """Write jobs without a dedupe key or dependencies, batch by batch as the queue
        plans them (see `write_batches`)."""
        batches = q.write_batches(specs)
        sent = []
        for batch in batches:
            try:
                sent.append(self._driver.eval_many(script(batch.script), batch.keys, batch.calls))
            except ReplicationError as exc:
                raise enqueued_replicated([specs[i] for i in batch.at], exc) from None
        q.written(specs, batches, sent)

    def _submit_observed(self, specs: list[_codec.NewJob]) -> list[str]:
        """Write jobs as the observers see fit (a trace's context added to each, say)."""
        with self._queue.observers.submitting(specs) as observed:
            return self._write(observed)

    def set_limit(
        self, key: str, *, concurrency: int | None = None, rate: str | None = None
    ) -> None:
        """Set a limit key's limit, as `JobService.set_limit` does (in every partition)."""
        q = self._parts()
        args = _limits.limit_args(key, concurrency, rate)
        for keys in q.parts:
            self._run("set_limit", *args, keys=keys)

    def remove_limit(self, key: str) -> bool:
        """Drop a key's limit, its waiting jobs queued again; False when it had none."""
        name = _limits.check_key(key)
        return any([bool(self._run("remove_limit", name, keys=k)) for k in self._parts().parts])

    def get_limits(self) -> list[LimitInfo]:
        """Every limit set, with its running and waiting jobs, as `JobService.get_limits`."""
        return _limits.limits_from([self._run("get_limits", keys=k) for k in self._parts().parts])

    def cancel_job(self, job_id: str) -> CancelOutcome:
        """Cancel a job, as `JobService.cancel_job` does: CANCELLED before it started,
        REQUESTED while it runs (it ends CANCELLED, its worker stops it), NOTHING when it is
        finished or unknown; true unless NOTHING."""
        keys = self._keys_of(job_id)
        return cancel_outcome(self._run("cancel", job_id, CONTROL_TTL_MS, keys=keys))

    def retry_dead_letter(self, job_id: str) -> bool:
        """Queue a dead-lettered job again with fresh attempts; False when it is not one."""
        return bool(self._run("retry_dead_letter", job_id, keys=self._keys_of(job_id)))

    def _keys_of(self, job_id: str) -> QueueKeys:
        return self._parts().keys_of(job_id)

    # -- schedules (the workers fire them) ------------------------------------------------

    def _schedules(self, name: str, *args: Any) -> Any:
        keys = self._queue.keys.scheduling
        return self._driver.eval(script(name), keys, self._queue.script_args(*args))

    def schedule(
        self,
        name: str,
        handler: str,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        priority: JobPriority | int | str = JobPriority.NORMAL,
        timeout: float | None = 300,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        misfire: str = "coalesce",
        max_lateness: float | timedelta | None = None,
        overlap: bool = False,
    ) -> ScheduleInfo:
        """Create or update a schedule, exactly as `JobService.schedule` does; the worker
        pools serving the queue fire it."""
        new = _schedules.new_schedule(
            name, handler, cron=cron, every=every, tz=tz, args=args, kwargs=kwargs,
            priority=priority, timeout=timeout, max_retries=max_retries,
            retry_delay=retry_delay, retry_backoff=retry_backoff, misfire=misfire,
            max_lateness=max_lateness, overlap=overlap, max_payload=self._queue.max_payload,
        )  # fmt: skip
        now, _ = _schedules.parse_read(self._schedules("get_schedules", name))
        self._schedules("schedule", *new.put_args(now))
        info = self.get_schedule(new.name)
        assert info is not None
        return info

    def get_schedules(self) -> list[ScheduleInfo]:
        """Every schedule of this queue by name, with its next five fire times."""
        _, found = _schedules.parse_read(self._schedules("get_schedules"))
        return [_schedules.info(name, found[name]) for name in sorted(found)]

    def get_schedule(self, name: str) -> ScheduleInfo | None:
        """One schedule, or None when there is none by that name."""
        _, found = _schedules.parse_read(self._schedules("get_schedules", name))
        return _schedules.info(name, found[name]) if name in found else None

    def pause_schedule(self, name: str) -> bool:
        """Stop a schedule firing until resumed; False when unknown or already paused."""
        return int(self._schedules("pause_schedule", name)) == 1

    def resume_schedule(self, name: str) -> bool:
        """Fire a paused schedule again from its next tick; False when unknown or not paused."""
        now, found = _schedules.parse_read(self._schedules("get_schedules", name))
        if name not in found:
            return False
        first = _schedules.next_after(_schedules.timing_from(found[name]), now)
        return int(self._schedules("resume_schedule", name, first)) == 1

    def trigger_schedule(self, name: str) -> str | None:
        """Queue one run of a schedule now; its job id, or None when there is none."""
        ids = _schedules.fired(self._schedules("fire_schedule", name, "now", "", "", 0))
        return ids[0] if ids else None

    def unschedule(self, name: str) -> bool:
        """Delete a schedule (runs already queued stay); False when there was none."""
        return int(self._schedules("unschedule", name)) == 1

    # -- reading back ---------------------------------------------------------------------

    def get_job_status(self, job_id: str) -> JobStatus | None:
        """The job's status, or None when unknown (or its record expired)."""
        raw = self._driver.hget(self._keys_of(job_id).job(job_id), "status")
        return JobStatus(raw) if raw else None

    def get_job_result(self, job_id: str) -> JobResult | None:
        """The job's outcome once terminal; None before, or when unknown."""
        record = _codec.with_id(job_id, self._driver.hgetall(self._keys_of(job_id).job(job_id)))
        return _codec.result(record) if record else None

    def get_job(self, job_id: str) -> JobDefinition | None:
        """The job's definition and state, or None when unknown."""
        record = _codec.with_id(job_id, self._driver.hgetall(self._keys_of(job_id).job(job_id)))
        return _codec.definition(record) if record else None

    def wait_for_result(self, job_id: str, timeout: float | None = None) -> JobResult:
        """Block until the job is terminal and return its result; TimeoutError past `timeout`
        seconds; JobNotFoundError at once when no record exists for the id (never submitted,
        or its result expired). Blocks on the events stream (no polling), re-reading the job's
        record when an event names it, and at least every second."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = self._keys_of(job_id).events  # its events are its partition's
        last = self._last_event_id(events)  # before the record is read: no event is missed
        while True:
            record = _codec.with_id(job_id, self._driver.hgetall(self._keys_of(job_id).job(job_id)))
            if not record:
                raise JobNotFoundError(job_id)
            result = _codec.result(record)
            if result is not None:
                return result
            left = _RECHECK if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} did not finish within {timeout:g}s")
            last = self._wait_event(events, job_id, last, min(left, _RECHECK))

    def _last_event_id(self, events: str) -> str:
        newest = self._driver.stream_range(events, 1, reverse=True)
        return newest[0][0] if newest else "0-0"

    def _wait_event(self, stream: str, job_id: str, last: str, wait: float) -> str:
        """Follow the events stream for up to `wait` seconds, returning early once an event
        names the job; returns the last event id read."""
        until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0:
            block_ms = max(1, int(left * 1000))
            events = self._driver.read_stream(stream, last, 500, block_ms)
            if not events:
                break
            last = events[-1][0]
            if any(fields.get("job_id") == job_id for _, fields in events):
                break
        return last

    def get_dead_letters(self, limit: int = 100) -> list[JobDefinition]:
        """The newest dead letters (each with `.error` and `.attempts`), newest first."""
        q = self._parts()
        entries = [
            e for keys in q.parts for e in self._driver.stream_range(keys.dead, limit, reverse=True)
        ]
        newest = newest_first(entries)[:limit]
        return [_codec.dead_letter(entry, fields) for entry, fields in newest]

    def get_metrics(self) -> dict[str, Any]:
        """Queue depth by state and priority, lifetime counters, and worker counts: the same
        shape as `JobService.get_metrics()`."""
        ttl_ms = int(self._timings.registry_ttl * 1000)
        snaps = [self._run("metrics", ttl_ms, keys=keys) for keys in self._parts().parts]
        return metrics_from(merge_snapshots(snaps), self._timings)
