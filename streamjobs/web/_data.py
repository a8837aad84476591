"""What the dashboard pages show, read from Redis: every read bounded, nothing kept in memory.

Pages never load a whole set. The jobs list reads one page of candidates from the structure
that already orders them (the priority streams, the pending entries list, the delayed set,
the dead-letter stream, the events stream), looks their records up in one pipeline, and
stops at a page or at a scan budget, handing back a cursor to go on from.

On a partitioned queue every read of the whole queue is one read per partition, issued
together and merged here: no script or command spans partitions. A list's cursor then holds
one position per partition; the chart sums each partition's own sampled counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from .. import _codec
from .._keys import GROUP, PRIORITIES, QueueKeys
from .._replies import entry_order, gather
from .._scripts import script
from ..models import JobDefinition, JobProgress, JobResult
from ..redis_queue import RedisJobQueue
from ._chart import WINDOW_MINUTES, add_charts, chart
from ._paging import (
    Key,
    Read,
    bound,
    join_cursor,
    merge_reads,
    merged,
    newest,
    position,
    split_cursor,
)

T = TypeVar("T")

#: Rows on a page of the jobs list.
PAGE = 50
#: Candidates a page looks at before it stops short and offers to go on.
SCAN_BUDGET = 2_000
#: Candidates read per round trip.
CHUNK = 200
#: Delayed jobs and dead letters counted one by one per priority; above it, totals only.
BREAKDOWN_LIMIT = 2_000
#: The record fields a row of the jobs list shows.
ROW_FIELDS = ("status", "handler", "priority", "attempts", "created_at", "finished_at", "error")

#: The jobs list's views: where each reads its candidates from, and which it keeps.
STATUSES = (
    "recent", "pending", "running", "scheduled", "retrying", "completed", "failed",
    "cancelled", "dead_letter",
)  # fmt: skip

#: For the views read from the events stream: the event types that name a candidate.
_EVENT_VIEWS: dict[str, tuple[str, ...]] = {
    "recent": ("job.queued", "job.scheduled"),
    "completed": ("job.completed",),
    "failed": ("job.failed",),
    "cancelled": ("job.cancelled",),
}


@dataclass
class Row:
    """One line of the jobs list."""

    id: str
    status: str
    handler: str
    priority: str
    attempts: str
    created_at: str
    finished_at: str
    error: str


@dataclass
class Page:
    """A page of the jobs list and the cursor of the next one ('' at the end)."""

    rows: list[Row]
    next_cursor: str
    scanned: int
    short: bool = False  # the scan budget ran out before the page filled


@dataclass
class Overview:
    """The overview page's numbers."""

    by_priority: list[dict[str, Any]]  # pending and running; the rest while countable
    totals: dict[str, int]
    workers: dict[str, int]
    oldest_pending_age: float | None
    chart: list[tuple[int, int | None, int | None]]  # minute, completed, failed
    now_ms: int


@dataclass
class JobView:
    """Everything the job page shows."""

    job: JobDefinition
    record: dict[str, str]
    result: JobResult | None
    progress: JobProgress | None
    percent: float | None
    events: list[dict[str, str]] = field(default_factory=list)


def fmt_ms(value: object) -> str:
    """A millisecond timestamp as UTC text ('' when there is none, or it is no number)."""
    if not isinstance(value, (str, int)) or not str(value).isdigit():
        return ""
    ms = int(value)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


def _zeros() -> dict[str, int]:
    return {"scheduled": 0, "retrying": 0, "dead_letter": 0}


def _priority_name(raw: str | None) -> str:
    for p in PRIORITIES:
        if str(int(p)) == (raw or "10"):
            return p.name.lower()
    return raw or ""


class Reader:
    """The dashboard's reads on one queue, over its own redis-py client. With many
    partitions, every read of the whole queue is one read per partition, issued together and
    merged here (no script or command spans partitions)."""

    def __init__(self, queue: RedisJobQueue, client: Redis) -> None:
        self.queue = queue
        #: redis-py's replies, decoded to str: typed loosely, read field by field below.
        self.r: Any = client
        self.keys: QueueKeys = queue.keys

    async def run(
        self, name: str, *args: Any, extra: str | None = None, keys: QueueKeys | None = None
    ) -> Any:
        """Run one of the dashboard's own Lua scripts on one partition (`keys`, else the
        first); `extra` is its own key, KEYS[14], of that partition."""
        keys = keys or self.keys
        names = keys.all if extra is None else (*keys.all, extra)
        return await self.queue.driver.eval(script(name), names, self.queue.script_args(*args))

    async def each(self, call: Callable[[QueueKeys], Awaitable[T]]) -> list[T]:
        """`call(keys)` for every partition, concurrently; results by partition."""
        return await gather([partial(call, keys) for keys in self.queue.parts])

    # -- overview ------------------------------------------------------------------------

    async def overview(self, metrics: dict[str, Any]) -> Overview:
        """Per-priority counts, totals, workers, the oldest pending job's age and the chart,
        from one metrics snapshot (summed over partitions) and one sample of each partition's
        counters."""
        keep = WINDOW_MINUTES + 1
        sampled = await self.each(
            lambda k: self.run("record_minute", keep, extra=k.dashboard_minutes, keys=k)
        )
        now_ms = max(int(now) for now, _ in sampled)
        minute = now_ms // 60_000

        async def charted(keys: QueueKeys, series: Any) -> list[tuple[int, int | None, int | None]]:
            samples = _codec.pairs(series)
            return chart(samples, minute, await self._history(keys, samples, minute))

        charts = await gather(
            [partial(charted, k, series) for k, (_, series) in zip(self.queue.parts, sampled)]
        )
        q = metrics["queue"]
        totals = {k: int(q[k]) for k in ("pending", "running", "scheduled", "retrying")}
        totals["dead_letter"] = int(q["dead_letter"])
        totals["completed"], totals["failed"] = int(q["completed"]), int(q["failed"])
        split = await self._split_by_priority(totals)
        rows = []
        for p in PRIORITIES:
            name = p.name.lower()
            row: dict[str, Any] = {"name": name, "pending": q["by_priority"][name],
                                   "running": q["running_by_priority"][name]}  # fmt: skip
            row.update(split.get(name, {}) if split is not None else {})
            rows.append(row)
        return Overview(
            by_priority=rows, totals=totals, workers=dict(metrics["workers"]),
            oldest_pending_age=float(q["oldest_pending_age"]) if totals["pending"] else None,
            chart=charts[0] if len(charts) == 1 else add_charts(charts), now_ms=now_ms,
        )  # fmt: skip

    async def _history(
        self, keys: QueueKeys, samples: dict[str, str], minute: int
    ) -> dict[int, tuple[int, int]]:
        """Completed and failed per minute from a partition's events stream, for the minutes
        of the window before the dashboard's first sample; {} when the samples cover the
        window. Minutes the stream no longer reaches (trimmed at its cap) are left out."""
        start = minute - WINDOW_MINUTES + 1
        if self.queue.events_maxlen <= 0 or (samples and min(int(m) for m in samples) < start):
            return {}  # no events kept, or no need
        oldest, capped, flat = await self.run(
            "events_per_minute", start * 60_000, self.queue.events_maxlen * 2, keys=keys
        )
        known_from = start
        if int(capped) and int(oldest) >= 0:
            known_from = max(start, int(oldest) // 60_000 + 1)  # its first minute is partial
        history = {m: (0, 0) for m in range(known_from, minute + 1)}
        for i in range(0, len(flat), 3):
            m = int(flat[i])
            if m >= known_from:
                history[m] = (int(flat[i + 1]), int(flat[i + 2]))
        return history

    async def _split_by_priority(self, totals: dict[str, int]) -> dict[str, dict[str, int]] | None:
        """Scheduled, retrying and dead letters per priority, counted from the delayed sets'
        records and the dead letters' entries while each holds at most BREAKDOWN_LIMIT in all
        (no counter keeps them per priority); None above that."""
        delayed = totals["scheduled"] + totals["retrying"]
        if delayed > BREAKDOWN_LIMIT or totals["dead_letter"] > BREAKDOWN_LIMIT:
            return None
        split = {p.name.lower(): _zeros() for p in PRIORITIES}

        async def count(keys: QueueKeys) -> tuple[list[Any], list[Any]]:
            pipe = self.r.pipeline(transaction=False)
            for job_id in await self.r.zrange(keys.delayed, 0, BREAKDOWN_LIMIT - 1):
                pipe.hmget(keys.job(job_id), ("status", "priority"))
            records = await pipe.execute()
            return records, await self.r.xrange(keys.dead, "-", "+", count=BREAKDOWN_LIMIT)

        for records, dead in await self.each(count):
            for status, priority in records:
                if status in ("SCHEDULED", "RETRYING"):
                    split.setdefault(_priority_name(priority), _zeros())[status.lower()] += 1
            for _, fields in dead:
                name = _priority_name(fields.get("priority"))
                split.setdefault(name, _zeros())["dead_letter"] += 1
        return split

    # -- jobs list -----------------------------------------------------------------------

    async def rows(self, ids: list[str]) -> list[dict[str, str] | None]:
        """Row fields of many jobs: one pipeline per partition they live in, issued together
        (None where the record is gone)."""
        groups = list(self.queue.by_partition(ids).items())

        async def read(p: int, at: list[int]) -> list[Any]:
            keys = self.queue.parts[p]
            pipe = self.r.pipeline(transaction=False)
            for i in at:
                pipe.hmget(keys.job(ids[i]), ROW_FIELDS)
            return list(await pipe.execute())

        found: list[dict[str, str] | None] = [None] * len(ids)
        replies = await gather([partial(read, p, at) for p, at in groups])
        for (_, at), reply in zip(groups, replies):
            for i, values in zip(at, reply):
                if values[0] is not None:
                    found[i] = {k: v or "" for k, v in zip(ROW_FIELDS, values)}
        return found

    async def page(self, status: str, handler: str, cursor: str, limit: int = PAGE) -> Page:
        """One page of the jobs list: `status` picks the view, `handler` ('' = any) filters.
        Each partition is read from its own position; the reads are merged in the view's
        order up to where every partition read was complete, so a page never skips a job."""
        if status not in STATUSES:
            status = "recent"
        parts = self.queue.parts
        positions = split_cursor(cursor, len(parts))
        rows: list[Row] = []
        scanned, seen = 0, set()
        n = limit  # a first read of one page's worth fills an unfiltered page
        while scanned < SCAN_BUDGET:
            live = [p for p, at in enumerate(positions) if at is not None]
            reads = await gather(
                [partial(self._candidates, parts[p], status, positions[p] or "", n) for p in live]
            )
            kept, dropped = merge_reads(live, reads)
            # a candidate counts once; where a partition's part of the batch named no job,
            # each of its entries does (entries past the cut, read again later, count then)
            named_in = {p for _, p, job_id, _ in kept if job_id}
            scanned += sum(1 for _, p, _, _ in kept if p not in named_in)
            named = [job_id for _, _, job_id, _ in kept if job_id]
            records = iter(await self.rows(named) if named else [])
            for _, p, job_id, at in kept:
                positions[p] = at  # every partition goes on from the last entry it showed
                if not job_id:
                    continue
                scanned += 1
                record = next(records)
                if not self._keep(status, handler, job_id, record) or job_id in seen:
                    continue
                seen.add(job_id)
                rows.append(_row(job_id, record))
                if len(rows) == limit:
                    return Page(rows, join_cursor(positions), scanned)
            for p, (_, after, _) in zip(live, reads):
                if not after and p not in dropped:
                    positions[p] = None  # read to its end, and all of it shown
            if all(at is None for at in positions):
                return Page(rows, "", scanned)
            n = CHUNK
        return Page(rows, join_cursor(positions), scanned, short=True)

    @staticmethod
    def _keep(status: str, handler: str, job_id: str, record: dict[str, str] | None) -> bool:
        if handler and (record is None or record["handler"] != handler):
            return False
        if status in ("recent", "completed", "failed", "cancelled"):
            # a finished job whose record expired still shows, from its event
            return status == "recent" or record is None or record["status"] == status.upper()
        return record is not None and record["status"] == status.upper()

    async def _candidates(self, keys: QueueKeys, status: str, cursor: str, n: int) -> Read:
        """Up to `n` candidates of one partition past `cursor`, in the view's order (see
        `Read`)."""
        if status == "pending":
            return await self._from_streams(keys, cursor, n)
        if status == "running":
            return await self._from_pending_entries(keys, cursor, n)
        if status in ("scheduled", "retrying"):
            start = int(cursor or 0)
            members = await self.r.zrange(keys.delayed, start, start + n - 1, withscores=True)
            batch: list[tuple[Key, str, str]] = [
                ((float(score), start + i), m, str(start + i + 1))
                for i, (m, score) in enumerate(members)
            ]
            if len(members) < n:
                return batch, "", None
            return batch, str(start + n), batch[-1][0]
        if status == "dead_letter":
            entries = await self.r.xrevrange(
                keys.dead, f"({cursor}" if cursor else "+", "-", count=n
            )
            batch = [(newest(e), str(f.get("id") or ""), e) for e, f in entries]
            if len(entries) < n:
                return batch, "", None
            return batch, entries[-1][0], newest(entries[-1][0])
        return await self._from_events(keys, _EVENT_VIEWS[status], cursor, n)

    async def _from_streams(self, keys: QueueKeys, cursor: str, n: int) -> Read:
        """Newest first across the four priority streams, merged by entry id (ties, one id
        in several streams, in priority order); the cursor is `<entry id>@<stream index>`."""
        after = position(cursor)
        found: list[tuple[Key, str, str]] = []
        cut: Key | None = None  # past it, a full read may hide entries
        for index, stream in enumerate(keys.streams):
            top = "+" if after is None else bound(after, index)
            entries = await self.r.xrevrange(stream, top, "-", count=n)
            read = [((-a, -b, index), e, f.get("id", "")) for e, f in entries
                    for a, b in [entry_order(e)]]  # fmt: skip
            found += read
            if len(entries) == n:
                cut = read[-1][0] if cut is None else min(cut, read[-1][0])
        return merged(found, cut)

    async def _from_pending_entries(self, keys: QueueKeys, cursor: str, n: int) -> Read:
        """Running jobs, longest running first: the groups' pending entries by entry id (ties
        in priority order); the cursor is `<entry id>@<stream index>`."""
        after = position(cursor)
        found: list[tuple[Key, str, str]] = []
        cut: Key | None = None
        for index, stream in enumerate(keys.streams):
            low = "-" if after is None else bound(after, index)
            try:
                pending = await self.r.xpending_range(stream, GROUP, low, "+", n)
            except Exception:  # no stream or group yet
                continue
            ids = [p["message_id"] for p in pending]
            entries = dict(await self._entries(stream, ids)) if ids else {}
            read = [((*entry_order(i), index), i, entries.get(i, "")) for i in ids]
            found += read
            if len(ids) == n:
                cut = read[-1][0] if cut is None else min(cut, read[-1][0])
        return merged(found, cut)

    async def _entries(self, stream: str, ids: list[str]) -> list[tuple[str, str]]:
        pipe = self.r.pipeline(transaction=False)
        for entry in ids:
            pipe.xrange(stream, entry, entry, count=1)
        found = []
        for reply in await pipe.execute():
            if reply:
                found.append((reply[0][0], reply[0][1].get("id", "")))
        return found

    async def _from_events(
        self, keys: QueueKeys, types: tuple[str, ...], cursor: str, n: int
    ) -> Read:
        """Jobs named by events of `types`, newest first; submissions only for 'recent'."""
        entries = await self.r.xrevrange(
            keys.events, f"({cursor}" if cursor else "+", "-", count=n
        )
        batch: list[tuple[Key, str, str]] = []
        for entry, f in entries:
            batch.append((newest(entry), f.get("job_id") or "", entry))
            if f.get("type") not in types:
                batch[-1] = (batch[-1][0], "", entry)
            elif f["type"] == "job.queued" and f.get("from"):
                batch[-1] = (batch[-1][0], "", entry)  # queued again: not a submission
            elif f["type"] == "job.failed" and f.get("status") not in (None, "FAILED"):
                batch[-1] = (batch[-1][0], "", entry)
        if len(entries) < n:
            return batch, "", None
        return batch, entries[-1][0], newest(entries[-1][0])

    # -- one job ---------------------------------------------------------------------------

    async def job(self, job_id: str, *, with_events: bool) -> JobView | None:
        """A job's record, decoded, with its events when asked (None when unknown); both
        read from the job's own partition."""
        keys = self.queue.keys_of(job_id)
        record = _codec.with_id(job_id, await self.r.hgetall(keys.job(job_id)))
        if not record or "handler" not in record:
            return None
        job = _codec.definition(record)
        progress = _codec.progress(record)
        percent = None
        if progress and progress.current is not None and progress.total:
            percent = max(0.0, min(100.0, 100 * progress.current / progress.total))
        view = JobView(job, record, _codec.result(record), progress, percent)
        if with_events:
            view.events = await self.job_events(job_id)
        return view

    async def job_events(self, job_id: str, budget: int = 10_000) -> list[dict[str, str]]:
        """The job's events still in its partition's events stream, oldest first (at most
        `budget` read, filtered in Redis by job_events.lua)."""
        found = await self.run("job_events", job_id, budget, keys=self.queue.keys_of(job_id))
        return [{"id": entry, **_codec.pairs(fields)} for entry, fields in reversed(found)]

    async def dead_letters(
        self, cursor: str, limit: int = PAGE
    ) -> tuple[list[dict[str, str]], str]:
        """A page of dead letters, newest first over every partition, and the next page's
        cursor (one position per partition, as the jobs list's)."""
        parts = self.queue.parts
        positions = split_cursor(cursor, len(parts))
        live = [p for p, at in enumerate(positions) if at is not None]

        async def read(p: int) -> list[Any]:
            at = positions[p]
            top = f"({at}" if at else "+"
            return list(await self.r.xrevrange(parts[p].dead, top, "-", count=limit))

        reads = await gather([partial(read, p) for p in live])
        merged = sorted(
            ((newest(e), p), e, f) for p, entries in zip(live, reads) for e, f in entries
        )[:limit]
        rows = []
        for (_, p), entry, fields in merged:
            positions[p] = entry
            rows.append({"entry": entry, **fields})
            rows[-1]["failed_at_text"] = fmt_ms(fields.get("failed_at"))
        taken = {p for (_, p), _, _ in merged}
        for p, entries in zip(live, reads):
            shown = p in taken and positions[p] == entries[-1][0]
            if len(entries) < limit and (not entries or shown):
                positions[p] = None  # read to its end, and all of it shown
        return rows, join_cursor(positions)

    async def dead_letter_count(self) -> int:
        """How many dead letters there are, over every partition."""
        return sum(int(n) for n in await self.each(lambda k: self.r.xlen(k.dead)))


def _row(job_id: str, record: dict[str, str] | None) -> Row:
    if record is None:
        return Row(job_id, "expired", "", "", "", "", "", "")
    return Row(
        id=job_id, status=record["status"], handler=record["handler"],
        priority=_priority_name(record["priority"]), attempts=record["attempts"] or "0",
        created_at=fmt_ms(record["created_at"]), finished_at=fmt_ms(record["finished_at"]),
        error=record["error"][:200],
    )  # fmt: skip


def dumps(value: Any) -> str:
    """JSON text for a template (arguments, results)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
