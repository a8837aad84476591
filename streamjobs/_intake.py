"""A pool's intake: it takes only as many jobs as the pool has idle workers, lapsed leases
first (reclaim), then new jobs, highest priority first, and blocks when none waits.

On one partition, the blocking pop of the queue's ready list goes out in the same write as
start.lua, so waking costs no round trip of its own. On many, it asks every partition for the
best priority waiting there and starts jobs only from the partitions holding the best one, and
only of that priority, so that no lower-priority job starts while a higher one waits anywhere;
when none waits, one task per partition blocks on that partition's ready list and wakes it
(no script ever touches two partitions).
"""

from __future__ import annotations

import logging
import time
from functools import partial

import anyio
import anyio.lowlevel

from ._backoff import pause
from ._drivers._errors import MissingGroupError
from ._lease import LeaseKeeper
from ._replies import gather
from ._slots import Slots, Worker
from ._timings import Timings
from .errors import StreamJobsError
from .redis_queue import Delivery, RedisJobQueue

log = logging.getLogger("streamjobs.worker")

#: Most rounds of asking the partitions and starting jobs in one intake pass: each round
#: starts a job or finds none waiting, so this only bounds a pathological race.
MAX_ROUNDS = 64


class Intake:
    """Reads jobs for one pool's idle workers and hands them over, leased."""

    def __init__(
        self, queue: RedisJobQueue, pool_id: str, timings: Timings, slots: Slots,
        keeper: LeaseKeeper,
    ) -> None:  # fmt: skip
        self.queue, self.pool_id, self.timings = queue, pool_id, timings
        self._slots, self._keeper = slots, keeper
        self._suspects: list[Delivery] = []  # reclaimed after a crash: each runs alone
        self._cursors = [["0-0"] * 4 for _ in range(queue.partition_count)]  # per partition
        self._turn = 0  # the partition a pass starts with, in turn, with many
        self._hungry = anyio.Event()  # set while the intake waits (many partitions)
        self._ready = anyio.Event()  # set by a partition's waiter on a ready token
        self._next_reclaim = 0.0
        self._dry = False  # the last read came back short of the workers it was for

    async def run(self) -> None:
        """Fill idle workers until cancelled; nothing Redis says stops it."""
        failures = 0
        while True:
            if self._suspects:
                await self._run_suspect()
                continue
            held = await self._slots.reserve()
            try:
                await self._reclaim(held)
                if self.queue.partition_count == 1:
                    await self._fill(held)
                else:
                    await self._fill_partitions(held)
                failures = 0
            except StreamJobsError as exc:
                failures += 1
                await self._recover(exc, failures)
            finally:
                self._slots.give_back(held)

    async def _recover(self, exc: StreamJobsError, failures: int) -> None:
        """After a failed read: create vanished groups again (a restart without persistence;
        at once the first time), else back off. Nothing Redis says here stops the pool, not
        even a failure while recreating the groups (a failover still under way)."""
        if isinstance(exc, MissingGroupError):
            try:
                await self.queue.ensure_groups()
            except StreamJobsError as again:
                exc = again
            else:
                log.warning("consumer groups were missing (%s); created again", exc)
                if failures == 1:
                    return
        await pause("reading jobs", exc, failures)

    @property
    def _lease_ms(self) -> int:
        """The pool's lease, recorded in each job started: its lease goes with it."""
        return int(self.timings.lease * 1000)

    async def _reclaim(self, held: list[Worker]) -> None:
        """Every reclaim interval, take over jobs whose lease lapsed, partition by partition."""
        t = self.timings
        if time.monotonic() < self._next_reclaim:
            return
        self._next_reclaim = time.monotonic() + t.reclaim_interval
        for p, cursors in enumerate(self._cursors):
            if held:
                got = await self.queue.reclaim(
                    self.pool_id, len(held), self._lease_ms, t.max_crashes, cursors, partition=p
                )
                if got and self.queue.observers:
                    self.queue.observers.reclaimed(len(got))
                self._launch(held, await self._set_aside_suspects(got))

    async def _fill(self, held: list[Worker]) -> None:
        """Start new jobs for the reserved workers of a one-partition queue, else block."""
        if not held:
            return
        lease_ms = self._lease_ms
        # After a short read the queue was dry, and every job queued since left a ready
        # token: wait at once, with no empty start.lua between one job and the next wait.
        dry, self._dry = self._dry, False  # an error on the way: read first next time
        got = [] if dry else await self.queue.start(self.pool_id, len(held), lease_ms=lease_ms)
        if not got:
            block_ms = int(self.timings.reclaim_interval * 1000)
            got = await self.queue.wait_for_jobs(
                self.pool_id, len(held), block_ms, lease_ms=lease_ms
            )
        self._dry = len(got) < len(held)
        self._launch(held, await self._set_aside_suspects(got))
        if got:  # let the workers just handed a job start it before the next read is
            await anyio.lowlevel.checkpoint()  # written: a job's latency, not the read's

    async def _fill_partitions(self, held: list[Worker]) -> None:
        """`_fill` over many partitions: best priority of all partitions first; once none
        waits, block until a partition's waiter sees a job made ready (or the reclaim
        interval passes)."""
        if await self._start_best(held):
            await anyio.lowlevel.checkpoint()  # let the workers start before the next read
        elif held:
            self._hungry.set()
            with anyio.move_on_after(self.timings.reclaim_interval):
                await self._ready.wait()
            self._hungry = anyio.Event()

    async def _start_best(self, held: list[Worker]) -> bool:
        """Rounds of asking every partition for its best waiting priority and starting jobs
        from those holding the best of all, down to it only, until the reserved workers are
        busy or none waits; True when any job started."""
        n, started = self.queue.partition_count, False
        for _ in range(MAX_ROUNDS):
            if not held:
                break
            self._ready = anyio.Event()  # a job made ready from now on ends the intake's wait
            levels = await gather([partial(self.queue.ready_level, p) for p in range(n)])
            best = min((level for level in levels if level), default=0)
            if not best:
                break
            self._turn = (self._turn + 1) % n  # partitions tied for the best take turns
            for p in [*range(self._turn, n), *range(self._turn)]:
                if held and levels[p] == best:
                    got = await self.queue.start(
                        self.pool_id, len(held), lease_ms=self._lease_ms, partition=p,
                        lowest=best,
                    )  # fmt: skip
                    started = started or bool(got)
                    self._launch(held, await self._set_aside_suspects(got))
        return started

    async def watch_ready(self, partition: int) -> None:
        """While the intake waits (many partitions), block on one partition's ready list
        and wake the intake when a job is made ready there."""
        failures = 0
        while True:
            await self._hungry.wait()
            try:
                if await self.queue.wait_ready(partition, self.timings.reclaim_interval):
                    self._ready.set()
                failures = 0
            except StreamJobsError as exc:
                failures += 1
                await pause(f"waiting for jobs in partition {partition}", exc, failures)

    async def _set_aside_suspects(self, got: list[Delivery]) -> list[Delivery]:
        """Jobs whose worker died running them run alone, so that a job crashing its process
        takes no other job down with it: this pool keeps one (leased while it waits for a
        solo run) and hands any other straight back to its stream for another turn."""
        suspects = [d for d in got if int(d.record.get("crashes") or 0) > 0]
        if not suspects:
            return got
        keep = suspects[:1] if not self._suspects else []
        for d in keep:
            self._keeper.hold(d, d.job.timeout if d.job else None, self.timings.lease)
        self._suspects += keep
        if passed_on := suspects[len(keep) :]:
            await self.queue.release(self.pool_id, passed_on)
        return [d for d in got if d not in suspects]

    async def _run_suspect(self) -> None:
        """Run one suspect with no other job beside it, and wait until it is done."""
        await self._slots.wait_all_idle()
        held = await self._slots.reserve()
        self._launch(held, [self._suspects.pop(0)])
        self._slots.give_back(held)
        await self._slots.wait_all_idle()

    def _launch(self, held: list[Worker], got: list[Delivery]) -> None:
        for d in got:
            worker = held.pop()
            self._keeper.hold(d, d.job.timeout if d.job else None, self.timings.lease)
            self._slots.hand(worker, d)
