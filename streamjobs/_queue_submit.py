"""Submitting to a queue: plain, fair (limit keys), deduplicated and dependent jobs, in
chunks per partition; cancelling, retrying a dead letter, and the limits themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

from . import _codec, _limits
from ._keys import QueueKeys, partition_of
from ._queue_base import QueueBase
from ._replies import (
    ENQUEUE_CHUNK,
    cancel_outcome,
    deduped_id,
    dependent_codes,
    enqueued_chunks,
    enqueued_replicated,
    gather,
    submitted,
)
from ._scripts import script
from .errors import InvalidJobError, ReplicationError
from .models import CancelOutcome, LimitInfo

#: The script that submits jobs, by whether they carry a limit key (queued fairly).
ENQUEUE = {False: "enqueue", True: "enqueue_fair"}
#: How long a pool's control list outlives its last push (ms): a live pool pops at once, and
#: one that died leaves nothing behind for long.
CONTROL_TTL_MS = 600_000


class Batch(NamedTuple):
    """Calls of one script on one partition, pipelined in one round trip: `at` holds the
    positions, in the jobs submitted, of the jobs they write, in order."""

    script: str
    keys: tuple[str, ...]
    calls: list[tuple[Any, ...]]
    at: Sequence[int]


class SubmittingQueue(QueueBase):
    """The submitting half of `RedisJobQueue`."""

    # -- submitting -----------------------------------------------------------------------

    def enqueue_calls(
        self, jobs: Sequence[_codec.NewJob], fair: bool = False
    ) -> list[tuple[Any, ...]]:
        """enqueue.lua's ARGV for validated jobs, ENQUEUE_CHUNK jobs per call; with `fair`,
        enqueue_fair.lua's (jobs with a limit key: the key after the delay)."""
        calls = []
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            flat: list[Any] = []
            for job in jobs[start : start + ENQUEUE_CHUNK]:
                if fair:
                    flat += (job.id, int(job.priority), job.delay_ms, job.limit_key)
                    flat += (len(job.fields), *job.fields)
                else:
                    flat += (job.id, int(job.priority), job.delay_ms, len(job.fields), *job.fields)
            calls.append(self.script_args(*flat))
        return calls

    def by_partition(self, ids: Sequence[str]) -> dict[int, list[int]]:
        """Positions of the ids by the partition each lives in, in order."""
        groups: dict[int, list[int]] = {}
        n = self.partition_count
        for i, job_id in enumerate(ids):
            groups.setdefault(partition_of(job_id, n), []).append(i)
        return groups

    async def enqueue(self, job: _codec.NewJob) -> bool:
        """Write a validated job; False when its id already had a record (nothing written).
        A replication shortfall raises ReplicationError naming the job (it was written)."""
        fair = job.limit_key is not None
        [call] = self.enqueue_calls([job], fair)
        keys = self.keys if self._n == 1 else self.keys_of(job.id)
        try:
            [code] = await self.driver.eval(script(ENQUEUE[fair]), keys.all, call)
        except ReplicationError as exc:
            raise exc.for_jobs([job.id]) from None
        return bool(code)

    def write_batches(self, jobs: Sequence[_codec.NewJob]) -> list[Batch]:
        """How jobs with neither dedupe key nor dependencies go to Redis: one batch per
        partition and kind (jobs with a limit key queued fairly, by enqueue_fair.lua), each
        `ENQUEUE_CHUNK` jobs a call; the async queue and the sync client both send these."""
        if self._n == 1 and all(job.limit_key is None for job in jobs):  # the common case
            calls = self.enqueue_calls(jobs)
            return [Batch(ENQUEUE[False], self.keys.all, calls, range(len(jobs)))]
        batches = []
        for fair in (False, True):
            kind = [i for i, job in enumerate(jobs) if (job.limit_key is not None) is fair]
            for p, at in self.by_partition([jobs[i].id for i in kind]).items():
                where = [kind[i] for i in at]
                calls = self.enqueue_calls([jobs[i] for i in where], fair)
                batches.append(Batch(ENQUEUE[fair], self.parts[p].all, calls, where))
        return batches

    @staticmethod
    def written(
        jobs: Sequence[_codec.NewJob], batches: Sequence[Batch], replies: Sequence[Sequence[Any]]
    ) -> list[bool]:
        """Per job, True written or False its id was taken, from each batch's replies (see
        `enqueued_chunks` for what a failed chunk raises)."""
        chunks: list[tuple[Sequence[int], Any]] = []
        for batch, got in zip(batches, replies):
            starts = range(0, len(batch.at), ENQUEUE_CHUNK)
            chunks += [(batch.at[n : n + ENQUEUE_CHUNK], r) for n, r in zip(starts, got)]
        return enqueued_chunks(jobs, chunks)

    async def enqueue_many(self, jobs: Sequence[_codec.NewJob]) -> list[bool]:
        """Write many jobs, one round trip per batch (see `write_batches`), the batches
        concurrently; each chunk is one atomic enqueue on one partition (see `written` for
        what a failed chunk raises, `enqueued_replicated` for a replication shortfall)."""
        batches = self.write_batches(jobs)

        async def send(batch: Batch) -> list[Any]:
            try:
                return await self.driver.eval_many(script(batch.script), batch.keys, batch.calls)
            except ReplicationError as exc:
                raise enqueued_replicated([jobs[i] for i in batch.at], exc) from None

        return self.written(jobs, batches, await gather([partial(send, b) for b in batches]))

    def deduped_batches(self, jobs: Sequence[_codec.NewJob]) -> list[Batch]:
        """How jobs with a dedupe key go to Redis: one enqueue_deduped.lua call each,
        pipelined per partition."""
        return [
            Batch("enqueue_deduped", self.parts[p].deduping,
                  [self.enqueue_deduped_call(jobs[i]) for i in at], at)
            for p, at in self.by_partition([job.id for job in jobs]).items()
        ]  # fmt: skip

    @staticmethod
    def deduped_replies(
        jobs: Sequence[_codec.NewJob], batches: Sequence[Batch], replies: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """The batches' replies, one per job, in the jobs' order."""
        ordered: list[Any] = [None] * len(jobs)
        for batch, got in zip(batches, replies):
            for i, reply in zip(batch.at, got):
                ordered[i] = reply
        return ordered

    def dependent_groups(self, jobs: Sequence[_codec.NewJob]) -> list[list[_codec.NewJob]]:
        """Jobs with dependencies, one enqueue_dependent call per partition, in their order;
        every group checked (see `flow_partition`) before anything is written."""
        by_part = self.by_partition([job.id for job in jobs])
        groups = [[jobs[i] for i in at] for at in by_part.values()]
        for group in groups:
            self.flow_partition(group)
        return groups

    def enqueue_deduped_call(self, job: _codec.NewJob) -> tuple[Any, ...]:
        """enqueue_deduped.lua's ARGV for a validated job with a dedupe key; its KEYS are
        its partition's `deduping`."""
        assert job.dedupe is not None
        d = job.dedupe
        return self.script_args(
            job.id, int(job.priority), job.delay_ms, d.key, d.mode, d.window_ms, len(job.fields),
            *job.fields,
        )  # fmt: skip

    async def enqueue_deduped(self, job: _codec.NewJob) -> str:
        """Write a job with a dedupe key unless its key's job stands for it; the id of the
        job that does (this one when it was queued)."""
        call = self.enqueue_deduped_call(job)
        keys = self.keys_of(job.id).deduping
        try:
            reply = await self.driver.eval(script("enqueue_deduped"), keys, call)
        except ReplicationError as exc:
            raise exc.for_jobs([deduped_id(exc.reply)]) from None
        return deduped_id(reply)

    # -- dependencies (enqueue_dependent.lua) ---------------------------------------------

    def flow_partition(self, jobs: Sequence[_codec.NewJob]) -> QueueKeys:
        """The keys of the one partition that jobs written by one enqueue_dependent call,
        and every job they depend on, live in: a script touches one partition only, and a
        dependency's settle releases its dependents in the same script. InvalidJobError
        when they span partitions."""
        n = self.partition_count
        if n == 1:
            return self.keys
        p = partition_of(jobs[0].id, n)
        for job in jobs:
            for job_id in (job.id, *job.depends_on):
                if partition_of(job_id, n) != p:
                    raise InvalidJobError(
                        "depends_on",
                        f"job {job.id!r} and its dependencies span partitions ({job_id!r} "
                        f"lives in partition {partition_of(job_id, n)}, not {p}): on a "
                        "partitioned queue a job and its dependencies share a partition",
                    )  # fmt: skip
        return self.parts[p]

    def enqueue_dependent_call(self, jobs: Sequence[_codec.NewJob]) -> tuple[Any, ...]:
        """enqueue_dependent.lua's ARGV for validated jobs (those without dependencies
        are queued at once), in order: a job may depend on jobs before it."""
        flat: list[Any] = []
        for job in jobs:
            deps = job.depends_on
            flat += (job.id, int(job.priority), job.delay_ms, job.on_dependency_failure,
                     len(deps), *deps, len(job.fields), *job.fields)  # fmt: skip
        return self.script_args(*flat)

    def flow_jobs(
        self, steps: Sequence[object], after: Sequence[Sequence[int]]
    ) -> list[_codec.NewJob]:
        """Validated jobs of a chain or a group: step i (a mapping of submit_job's keywords,
        as submit_many takes) depends on the steps at `after[i]`, and on its own
        `depends_on` when given. Each step gets an id before anything is written (its own
        `job_id` kept); with many partitions all share one: a given job_id's, else the first
        step's `partition_key`'s, else the next in turn. Raises InvalidJobError naming the
        step (`jobs[2].timeout: ...`)."""
        specs: list[dict[str, Any]] = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping):
                raise InvalidJobError(f"jobs[{i}]", "must be a dict of submit_job keywords")
            if step.get("dedupe_key") is not None:
                raise InvalidJobError(f"jobs[{i}].dedupe_key", "cannot be used in a chain or group")
            own = step.get("depends_on")
            if own is not None and (isinstance(own, (str, bytes)) or not isinstance(own, Iterable)):
                raise InvalidJobError(f"jobs[{i}].depends_on", "must be a list of job ids")
            specs.append(dict(step))
        n = self.partition_count
        prefix = ""
        if n > 1:
            given = next((s["job_id"] for s in specs if isinstance(s.get("job_id"), str)), None)
            key = specs[0].get("partition_key") if specs and given is None else None
            placed = given or self.place(None, key)
            assert placed is not None
            prefix = f"{partition_of(placed, n)}."
        for spec in specs:
            spec.pop("partition_key", None)
            if spec.get("job_id") is None:
                spec["job_id"] = prefix + _codec.fresh_id()
        for spec, before in zip(specs, after):
            deps = [specs[j]["job_id"] for j in before] + list(spec.get("depends_on") or ())
            if deps:
                spec["depends_on"] = deps
        return _codec.new_jobs(specs, self.max_payload)

    async def enqueue_dependent(self, jobs: Sequence[_codec.NewJob]) -> list[bool]:
        """Write jobs with their dependency edges in one script call, all or nothing: per
        job True written, False its id was taken; InvalidJobError naming a dependency that
        has no record (nothing written)."""
        keys = self.flow_partition(jobs)
        reply = await self.driver.eval(
            script("enqueue_dependent"), keys.all, self.enqueue_dependent_call(jobs)
        )
        return dependent_codes(reply)

    async def submit(self, jobs: Sequence[_codec.NewJob]) -> list[str]:
        """Write many jobs, those with a dedupe key one script call each (pipelined in one
        round trip per partition), those with dependencies after the others, one
        enqueue_dependent call per partition; the ids that stand for them, in order (see
        `submitted`)."""
        if any(job.depends_on for job in jobs):
            return await self._submit_dependent(jobs)
        deduped = [job for job in jobs if job.dedupe is not None]
        if not deduped:
            await self.enqueue_many(jobs)
            return [job.id for job in jobs]
        plain = [job for job in jobs if job.dedupe is None]
        if plain:
            await self.enqueue_many(plain)
        batches = self.deduped_batches(deduped)

        async def send(batch: Batch) -> list[Any]:
            try:
                return await self.driver.eval_many(script(batch.script), batch.keys, batch.calls)
            except ReplicationError as exc:  # each job, or the one standing for it, is written
                raise exc.for_jobs([job.id for job in jobs]) from None

        sent = await gather([partial(send, b) for b in batches])
        replies = self.deduped_replies(deduped, batches, sent)
        return submitted(jobs, plain, deduped, replies)

    async def _submit_dependent(self, jobs: Sequence[_codec.NewJob]) -> list[str]:
        """`submit` for jobs some of which depend on others: the rest first, then the
        dependent ones (which may depend on those) per partition, each partition's in one
        call, in their order."""
        rest = [job for job in jobs if not job.depends_on]
        standing = dict(zip([job.id for job in rest], await self.submit(rest) if rest else []))
        groups = self.dependent_groups([job for job in jobs if job.depends_on])
        await gather([partial(self.enqueue_dependent, group) for group in groups])
        return [standing.get(job.id, job.id) for job in jobs]

    async def cancel(self, job_id: str) -> CancelOutcome:
        """End a job CANCELLED, and tell its pool to stop it when it runs (cancel.lua)."""
        keys = self.keys_of(job_id)
        return cancel_outcome(await self._run_strict("cancel", job_id, CONTROL_TTL_MS, keys=keys))

    async def retry_dead_letter(self, job_id: str) -> bool:
        """Queue a dead-lettered job again with fresh attempts."""
        keys = self.keys_of(job_id)
        return bool(await self._run_strict("retry_dead_letter", job_id, keys=keys))

    # -- limits ---------------------------------------------------------------------------

    async def set_limit(self, key: str, concurrency: int | None, rate: str | None) -> None:
        """Set a limit key's limit in every partition (see `_limits.limit_args`): jobs with
        an explicit limit key all live in its partition, so that one enforces it."""
        args = _limits.limit_args(key, concurrency, rate)
        await self._each(lambda k, p: self._run("set_limit", *args, keys=k))

    async def remove_limit(self, key: str) -> bool:
        """Drop a limit key's limit everywhere, its parked jobs queued again; False when it
        had none."""
        name = _limits.check_key(key)
        return any(await self._each(lambda k, p: self._run("remove_limit", name, keys=k)))

    async def get_limits(self) -> list[LimitInfo]:
        """Every limit with its running and waiting jobs, by key."""
        return _limits.limits_from(await self._each(lambda k, p: self._run("get_limits", keys=k)))
