"""What a queue makes of Redis' replies, with nothing to send: the outcomes of submits
(chunks written, refused or lost; deduplicated and dependent jobs), cancels, the server's
version and eviction policy, and the merging of what many partitions answered."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

from . import _codec
from ._drivers._pipeline import ReplyLost
from .errors import (
    InvalidJobError,
    PartialSubmitError,
    RedisVersionError,
    ReplicationError,
    StreamJobsError,
)
from .models import CancelOutcome

#: Jobs per enqueue.lua call in a bulk submit: calls stay short, so Redis never stalls long.
ENQUEUE_CHUNK = 200
MIN_REDIS = (6, 2)

log = logging.getLogger("streamjobs")

T = TypeVar("T")


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run calls concurrently in a task group (one per partition); their results in order.
    When Redis fails some, the others still finish, and the first failure is raised as
    itself, as with one partition: callers that back off on a StreamJobsError (a worker's
    loops, through a failover that takes down the primary of a few partitions) never meet
    an exception group."""
    if len(calls) == 1:
        return [await calls[0]()]
    results: list[Any] = [None] * len(calls)
    failures: list[StreamJobsError] = []

    async def one(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except StreamJobsError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(one, i)
    if failures:
        raise failures[0]
    return results


def check_version(version: tuple[int, ...]) -> None:
    """Refuse a Redis older than 6.2 (no XAUTOCLAIM) with a message that says so."""
    if version[:2] < MIN_REDIS:
        found = ".".join(map(str, version))
        raise RedisVersionError(f"Redis {found} is too old: streamjobs needs Redis 6.2 or newer")


def warn_if_evicting(policy: str | None) -> None:
    """Warn when Redis may evict keys: a queued job's record or stream could vanish."""
    if policy is not None and policy != "noeviction":
        log.warning(
            "Redis maxmemory-policy is %r, not 'noeviction': once Redis is full it may evict "
            "queued jobs without a trace; set maxmemory-policy noeviction", policy,
        )  # fmt: skip


def deduped_id(reply: Sequence[Any]) -> str:
    """The id of the job standing for a deduplicated submit, from enqueue_deduped.lua."""
    return str(reply[1])


def submitted(
    jobs: Sequence[_codec.NewJob], plain: Sequence[_codec.NewJob],
    deduped: Sequence[_codec.NewJob], replies: Sequence[Any],
) -> list[str]:  # fmt: skip
    """The ids standing for a bulk submit whose `plain` jobs were written, from the replies
    to its `deduped` ones; when one of those failed, PartialSubmitError names what was
    written (the plain jobs, the deduplicated ones that came back) and what was not."""
    standing = {job.id: job.id for job in plain}
    refused: list[str] = []
    unknown: list[str] = []
    error: StreamJobsError | None = None
    for job, reply in zip(deduped, replies):
        if isinstance(reply, StreamJobsError):
            (unknown if isinstance(reply, ReplyLost) else refused).append(job.id)
            error = error or (reply.error if isinstance(reply, ReplyLost) else reply)
        else:
            standing[job.id] = deduped_id(reply)
    if error is not None:
        ids = [job.id for job in jobs]
        raise PartialSubmitError(ids, list(standing), refused, unknown, error) from error
    return [standing[job.id] for job in jobs]


def dependent_codes(reply: Sequence[Any]) -> list[bool]:
    """enqueue_dependent.lua's reply as one bool per job (False: its id was taken);
    InvalidJobError for a dependency without a record (nothing was written)."""
    if str(reply[0]) == "unknown":
        raise InvalidJobError(
            "depends_on",
            f"no job {reply[1]!s} (never submitted, or its result expired); nothing was written",
        )
    return [bool(code) for code in reply[1]]


def cancel_outcome(reply: Any) -> CancelOutcome:
    """cancel.lua's return code as what `cancel_job` did."""
    return _CANCEL_OUTCOMES.get(int(reply), CancelOutcome.NOTHING)


_CANCEL_OUTCOMES = {1: CancelOutcome.CANCELLED, 2: CancelOutcome.REQUESTED}


def enqueued(jobs: Sequence[_codec.NewJob], replies: Sequence[Any]) -> list[bool]:
    """Per job, True enqueued or False its id was taken, from enqueue.lua's outcomes (one per
    ENQUEUE_CHUNK jobs, see `Driver.eval_many`). When Redis refused every chunk, nothing was
    written: the first refusal is raised as itself. When some chunk failed and some other was
    written, or lost its reply, PartialSubmitError names the ids written, refused and unknown
    (the caller may not know the ids: they may have been generated)."""
    if not any(isinstance(reply, StreamJobsError) for reply in replies):
        return [bool(code) for reply in replies for code in reply]
    chunks = [
        range(n, min(n + ENQUEUE_CHUNK, len(jobs))) for n in range(0, len(jobs), ENQUEUE_CHUNK)
    ]
    return enqueued_chunks(jobs, list(zip(chunks, replies)))


def enqueued_chunks(
    jobs: Sequence[_codec.NewJob], chunks: Sequence[tuple[Sequence[int], Any]]
) -> list[bool]:
    """As `enqueued`, for chunks given as (positions in `jobs`, reply): a submit spread over
    partitions sends each partition its own chunks."""
    codes = [False] * len(jobs)
    if not any(isinstance(reply, StreamJobsError) for _, reply in chunks):
        for at, reply in chunks:
            for i, code in zip(at, reply):
                codes[i] = bool(code)
        return codes
    written: list[str] = []
    refused: list[str] = []
    unknown: list[str] = []
    error: StreamJobsError | None = None
    for at, reply in chunks:
        ids = [jobs[i].id for i in at]
        if isinstance(reply, ReplyLost):
            unknown += ids
            error = error or reply.error
        elif isinstance(reply, StreamJobsError):
            refused += ids
            error = error or reply
        else:
            written += ids
    assert error is not None
    if not written and not unknown:
        raise error
    ids = [job.id for job in jobs]
    raise PartialSubmitError(ids, written, refused, unknown, error) from error


def enqueued_replicated(jobs: Sequence[_codec.NewJob], exc: ReplicationError) -> Exception:
    """The error for a bulk submit whose WAIT fell short: every chunk written, the shortfall
    naming their jobs; some chunk refused or lost, PartialSubmitError (caused by the
    shortfall) naming written, refused and unknown ids as `enqueued` does."""
    replies = exc.reply if isinstance(exc.reply, list) else []
    try:
        enqueued(jobs, replies)
    except PartialSubmitError as partial:
        partial.__cause__ = exc.for_jobs(partial.written)
        return partial
    except StreamJobsError as error:  # nothing written after all
        return error
    return exc.for_jobs([job.id for job in jobs])


def replicated_anyway(name: str, exc: ReplicationError) -> Any:
    """A worker's change that too few replicas acknowledged: it stands on the primary, so
    its reply is used; the shortfall is logged."""
    log.warning("%s: %s", name, exc)
    return exc.reply


def entry_order(entry: str) -> tuple[int, int]:
    """A stream entry id ("ms-seq") as numbers, to order entries of several streams."""
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)


def newest_first(entries: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Stream entries of many partitions, newest first by entry id (ids are times)."""
    return sorted(entries, key=lambda item: entry_order(item[0]), reverse=True)


def merge_snapshots(snapshots: Sequence[Any]) -> list[Any]:
    """One metrics.lua reply from one per partition: lengths and counters summed, the oldest
    undelivered entry's age the greatest; the pools from the first (every pool registers in
    every partition)."""
    first = list(snapshots[0])
    if len(snapshots) == 1:
        return first
    streams = [[0, 0, -1] for _ in first[0]]
    stats: dict[str, int] = {}
    delayed = dead = 0
    for snap in snapshots:
        for total, (length, delivered, age) in zip(streams, snap[0]):
            total[0] += int(length)
            total[1] += int(delivered)
            total[2] = max(total[2], int(age))
        delayed, dead = delayed + int(snap[1]), dead + int(snap[2])
        for name, value in _codec.pairs(snap[3]).items():
            stats[name] = stats.get(name, 0) + int(value)
    flat = [x for item in stats.items() for x in item]
    return [streams, delayed, dead, flat, first[4], first[5]]
