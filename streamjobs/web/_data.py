"""What the dashboard pages show, read from Redis: every read bounded, nothing kept in memory.

Pages never load a whole set. The jobs list reads one page of candidates from the structure
that already orders them (the priority streams, the pending entries list, the delayed set,
the dead-letter stream, the events stream), looks their records up in one pipeline, and
stops at a page or at a scan budget, handing back a cursor to go on from.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from .. import _codec
from .._keys import GROUP, PRIORITIES, QueueKeys
from .._scripts import script
from ..models import JobDefinition, JobProgress, JobResult
from ..redis_queue import RedisJobQueue

#: Rows on a page of the jobs list.
PAGE = 50
#: Candidates a page looks at before it stops short and offers to go on.
SCAN_BUDGET = 2_000
#: Candidates read per round trip.
CHUNK = 200
#: Minutes the throughput chart shows.
WINDOW_MINUTES = 60
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


_ENTRY = re.compile(r"\d{1,20}-\d{1,20}")


def valid_cursor(status: str, cursor: str) -> bool:
    """Whether `cursor` is one the view hands out ('' starts at the top)."""
    if not cursor:
        return True
    if status in ("scheduled", "retrying"):
        return cursor.isdigit()
    if status in ("pending", "running"):
        entry, _, index = cursor.partition("@")
        return bool(_ENTRY.fullmatch(entry)) and index in ("0", "1", "2", "3")
    return bool(_ENTRY.fullmatch(cursor))


def _id_key(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)


def _position(cursor: str) -> tuple[str, int] | None:
    """A merged-streams cursor, `<entry id>@<stream index>`, as (entry id, index)."""
    entry, _, index = cursor.partition("@")
    if not entry or not index.isdigit():
        return None
    return entry, int(index)


def _bound(after: tuple[str, int], index: int) -> str:
    """Where stream `index` resumes past the cursor: streams up to the cursor's own have
    shown its entry id already (exclusive bound), later ones not yet (inclusive)."""
    entry, at = after
    return f"({entry}" if index <= at else entry


def _merged(
    found: list[tuple[tuple[int, int, int], str, str]], cut: tuple[int, int, int] | None
) -> tuple[list[tuple[str, str]], str]:
    """Candidates of several streams in one order, up to where every stream was read."""
    found.sort(key=lambda item: item[0])
    if cut is not None:
        found = [item for item in found if item[0] <= cut]
    batch = [(job_id, f"{entry}@{key[2]}") for key, entry, job_id in found if job_id]
    if cut is None or not found:
        return batch, ""
    key, entry, _ = found[-1]
    return batch, f"{entry}@{key[2]}"


def _zeros() -> dict[str, int]:
    return {"scheduled": 0, "retrying": 0, "dead_letter": 0}


def _priority_name(raw: str | None) -> str:
    for p in PRIORITIES:
        if str(int(p)) == (raw or "10"):
            return p.name.lower()
    return raw or ""


class Reader:
    """The dashboard's reads on one queue, over its own redis-py client."""

    def __init__(self, queue: RedisJobQueue, client: Redis) -> None:
        self.queue = queue
        #: redis-py's replies, decoded to str: typed loosely, read field by field below.
        self.r: Any = client
        self.keys: QueueKeys = queue.keys

    async def run(self, name: str, *args: Any, extra: str | None = None) -> Any:
        """Run one of the dashboard's own Lua scripts; `extra` is its own key, KEYS[14]."""
        keys = self.keys.all if extra is None else (*self.keys.all, extra)
        return await self.queue.driver.eval(script(name), keys, self.queue.script_args(*args))

    # -- overview ------------------------------------------------------------------------

    async def overview(self, metrics: dict[str, Any]) -> Overview:
        """Per-priority counts, totals, workers, the oldest pending job's age and the chart,
        from one metrics snapshot and one sample of the counters."""
        now_ms, series = await self.run(
            "record_minute", WINDOW_MINUTES + 1, extra=self.keys.dashboard_minutes
        )
        q = metrics["queue"]
        totals = {k: int(q[k]) for k in ("pending", "running", "scheduled", "retrying")}
        totals["dead_letter"] = int(q["dead_letter"])
        totals["completed"], totals["failed"] = int(q["completed"]), int(q["failed"])
        split = await self._split_by_priority(totals)
        samples, minute = _codec.pairs(series), int(now_ms) // 60_000
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
            chart=chart(samples, minute, await self._history(samples, minute)), now_ms=int(now_ms),
        )  # fmt: skip

    async def _history(self, samples: dict[str, str], minute: int) -> dict[int, tuple[int, int]]:
        """Completed and failed per minute from the events stream, for the minutes of the
        window before the dashboard's first sample; {} when the samples cover the window.
        Minutes the stream no longer reaches (trimmed at its cap) are left out."""
        start = minute - WINDOW_MINUTES + 1
        if self.queue.events_maxlen <= 0 or (samples and min(int(m) for m in samples) < start):
            return {}  # no events kept, or no need
        oldest, capped, flat = await self.run(
            "events_per_minute", start * 60_000, self.queue.events_maxlen * 2
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
        """Scheduled, retrying and dead letters per priority, counted from the delayed set's
        records and the dead letters' entries while each holds at most BREAKDOWN_LIMIT (no
        counter keeps them per priority); None above that."""
        delayed = totals["scheduled"] + totals["retrying"]
        if delayed > BREAKDOWN_LIMIT or totals["dead_letter"] > BREAKDOWN_LIMIT:
            return None
        split = {p.name.lower(): _zeros() for p in PRIORITIES}
        pipe = self.r.pipeline(transaction=False)
        for job_id in await self.r.zrange(self.keys.delayed, 0, BREAKDOWN_LIMIT - 1):
            pipe.hmget(self.keys.job(job_id), ("status", "priority"))
        for status, priority in await pipe.execute():
            if status in ("SCHEDULED", "RETRYING"):
                split.setdefault(_priority_name(priority), _zeros())[status.lower()] += 1
        for _, fields in await self.r.xrange(self.keys.dead, "-", "+", count=BREAKDOWN_LIMIT):
            split.setdefault(_priority_name(fields.get("priority")), _zeros())["dead_letter"] += 1
        return split

    # -- jobs list -----------------------------------------------------------------------

    async def rows(self, ids: list[str]) -> list[dict[str, str] | None]:
        """Row fields of many jobs in one pipeline (None where the record is gone)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), ROW_FIELDS)
        found: list[dict[str, str] | None] = []
        for values in await pipe.execute():
            if values[0] is None:
                found.append(None)
            else:
                found.append({k: v or "" for k, v in zip(ROW_FIELDS, values)})
        return found

    async def page(self, status: str, handler: str, cursor: str, limit: int = PAGE) -> Page:
        """One page of the jobs list: `status` picks the view, `handler` ('' = any) filters."""
        if status not in STATUSES:
            status = "recent"
        rows: list[Row] = []
        scanned, seen = 0, set()
        position = cursor
        n = limit  # a first read of one page's worth fills an unfiltered page
        while scanned < SCAN_BUDGET:
            batch, after = await self._candidates(status, position, n)
            if not batch and not after:
                return Page(rows, "", scanned)
            scanned += n if not batch else 0  # a read that named no job still counts
            records = await self.rows([job_id for job_id, _ in batch]) if batch else []
            for (job_id, at), record in zip(batch, records):
                scanned += 1
                position = at
                if not self._keep(status, handler, job_id, record) or job_id in seen:
                    continue
                seen.add(job_id)
                rows.append(_row(job_id, record))
                if len(rows) == limit:
                    return Page(rows, position, scanned)
            if after == "":
                return Page(rows, "", scanned)
            position, n = after, CHUNK
        return Page(rows, position, scanned, short=True)

    @staticmethod
    def _keep(status: str, handler: str, job_id: str, record: dict[str, str] | None) -> bool:
        if handler and (record is None or record["handler"] != handler):
            return False
        if status in ("recent", "completed", "failed", "cancelled"):
            # a finished job whose record expired still shows, from its event
            return status == "recent" or record is None or record["status"] == status.upper()
        return record is not None and record["status"] == status.upper()

    async def _candidates(
        self, status: str, cursor: str, n: int
    ) -> tuple[list[tuple[str, str]], str]:
        """Up to `n` (job id, cursor after it) in the view's order, and the cursor after the
        batch ('' when the source is exhausted)."""
        if status == "pending":
            return await self._from_streams(cursor, n)
        if status == "running":
            return await self._from_pending_entries(cursor, n)
        if status in ("scheduled", "retrying"):
            start = int(cursor or 0)
            members = await self.r.zrange(self.keys.delayed, start, start + n - 1)
            batch = [(m, str(start + i + 1)) for i, m in enumerate(members)]
            return batch, (str(start + n) if len(members) == n else "")
        if status == "dead_letter":
            entries = await self.r.xrevrange(
                self.keys.dead, f"({cursor}" if cursor else "+", "-", count=n
            )
            batch = [(f.get("id", ""), e) for e, f in entries if f.get("id")]
            return batch, (entries[-1][0] if len(entries) == n else "")
        return await self._from_events(_EVENT_VIEWS[status], cursor, n)

    async def _from_streams(self, cursor: str, n: int) -> tuple[list[tuple[str, str]], str]:
        """Newest first across the four priority streams, merged by entry id (ties, one id
        in several streams, in priority order); the cursor is `<entry id>@<stream index>`."""
        after = _position(cursor)
        found: list[tuple[tuple[int, int, int], str, str]] = []
        cut: tuple[int, int, int] | None = None  # past it, a full read may hide entries
        for index, stream in enumerate(self.keys.streams):
            top = "+" if after is None else _bound(after, index)
            entries = await self.r.xrevrange(stream, top, "-", count=n)
            keys = [
                ((-a, -b, index), e, f.get("id", "")) for e, f in entries for a, b in [_id_key(e)]
            ]
            found += keys
            if len(entries) == n:
                cut = keys[-1][0] if cut is None else min(cut, keys[-1][0])
        return _merged(found, cut)

    async def _from_pending_entries(self, cursor: str, n: int) -> tuple[list[tuple[str, str]], str]:
        """Running jobs, longest running first: the groups' pending entries by entry id (ties
        in priority order); the cursor is `<entry id>@<stream index>`."""
        after = _position(cursor)
        found: list[tuple[tuple[int, int, int], str, str]] = []
        cut: tuple[int, int, int] | None = None
        for index, stream in enumerate(self.keys.streams):
            low = "-" if after is None else _bound(after, index)
            try:
                pending = await self.r.xpending_range(stream, GROUP, low, "+", n)
            except Exception:  # no stream or group yet
                continue
            ids = [p["message_id"] for p in pending]
            entries = dict(await self._entries(stream, ids)) if ids else {}
            keys = [((*_id_key(i), index), i, entries.get(i, "")) for i in ids]
            found += keys
            if len(ids) == n:
                cut = keys[-1][0] if cut is None else min(cut, keys[-1][0])
        return _merged(found, cut)

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
        self, types: tuple[str, ...], cursor: str, n: int
    ) -> tuple[list[tuple[str, str]], str]:
        """Jobs named by events of `types`, newest first; submissions only for 'recent'."""
        entries = await self.r.xrevrange(
            self.keys.events, f"({cursor}" if cursor else "+", "-", count=n
        )
        batch = []
        for entry, f in entries:
            if f.get("type") not in types or not f.get("job_id"):
                continue
            if f["type"] == "job.queued" and f.get("from"):
                continue  # queued again (promoted, retried): not a submission
            if f["type"] == "job.failed" and f.get("status") not in (None, "FAILED"):
                continue
            batch.append((f["job_id"], entry))
        return batch, (entries[-1][0] if len(entries) == n else "")

    # -- one job ---------------------------------------------------------------------------

    async def job(self, job_id: str, *, with_events: bool) -> JobView | None:
        """A job's record, decoded, with its events when asked (None when unknown)."""
        record = _codec.with_id(job_id, await self.r.hgetall(self.keys.job(job_id)))
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
        """The job's events still in the events stream, oldest first (at most `budget` read,
        filtered in Redis by job_events.lua)."""
        found = await self.run("job_events", job_id, budget)
        return [{"id": entry, **_codec.pairs(fields)} for entry, fields in reversed(found)]

    async def dead_letters(
        self, cursor: str, limit: int = PAGE
    ) -> tuple[list[dict[str, str]], str]:
        """A page of dead letters, newest first, and the next page's cursor."""
        top = f"({cursor}" if cursor else "+"
        entries = await self.r.xrevrange(self.keys.dead, top, "-", count=limit)
        rows = [{"entry": e, **f} for e, f in entries]
        for row in rows:
            row["failed_at_text"] = fmt_ms(row.get("failed_at"))
        return rows, (entries[-1][0] if len(entries) == limit else "")

    async def dead_letter_count(self) -> int:
        """How many dead letters there are."""
        return int(await self.r.xlen(self.keys.dead))


def _row(job_id: str, record: dict[str, str] | None) -> Row:
    if record is None:
        return Row(job_id, "expired", "", "", "", "", "", "")
    return Row(
        id=job_id, status=record["status"], handler=record["handler"],
        priority=_priority_name(record["priority"]), attempts=record["attempts"] or "0",
        created_at=fmt_ms(record["created_at"]), finished_at=fmt_ms(record["finished_at"]),
        error=record["error"][:200],
    )  # fmt: skip


def chart(
    series: dict[str, str], minute: int, history: dict[int, tuple[int, int]] | None = None
) -> list[tuple[int, int | None, int | None]]:
    """Completed and failed per minute over the window, from the sampled lifetime counters:
    a minute's count is its sample less the one before; minutes no dashboard sampled share
    the difference across the gap evenly. Before the first sample, the counts `history`
    took from the events stream; None where neither knows."""
    samples = {int(m): tuple(int(x) for x in v.split()) for m, v in series.items()}
    out: list[tuple[int, int | None, int | None]] = []
    for m in range(minute - WINDOW_MINUTES + 1, minute + 1):
        after = min((k for k in samples if k >= m), default=None)
        before = max((k for k in samples if k < m), default=None)
        if after is None or before is None:
            known = (history or {}).get(m)
            out.append((m, *known) if known else (m, None, None))
            continue
        span = after - before
        done = (samples[after][0] - samples[before][0]) / span
        failed = (samples[after][1] - samples[before][1]) / span
        out.append((m, max(0, round(done)), max(0, round(failed))))
    return out


def dumps(value: Any) -> str:
    """JSON text for a template (arguments, results)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
