"""Paging the dashboard's lists: cursors (one position per partition, packed when long),
and merging what several streams and partitions read into one order, never past the point
every source has been read to."""

from __future__ import annotations

import base64
import re
import zlib

from .._replies import entry_order

_ENTRY = re.compile(r"\d{1,20}-\d{1,20}")

#: Where a merged cursor says a partition has nothing left to show.
DONE = "x"
#: Merged cursors longer than this are packed: zlib, then URL-safe base64, after a 'z'.
PACK_OVER = 200
PACKED = "z"

#: A candidate's place in its view's order (smaller first); partitions' keys compare alike.
Key = tuple[float, ...]


def _valid_one(status: str, cursor: str) -> bool:
    if not cursor:
        return True
    if status in ("scheduled", "retrying"):
        return cursor.isdigit()
    if status in ("pending", "running"):
        entry, _, index = cursor.partition("@")
        return bool(_ENTRY.fullmatch(entry)) and index in ("0", "1", "2", "3")
    return bool(_ENTRY.fullmatch(cursor))


def _unpacked(cursor: str, partitions: int) -> str | None:
    """A packed cursor's positions text (None when it does not unpack within the size
    `partitions` positions can take); any other cursor as it is."""
    if not cursor.startswith(PACKED):
        return cursor
    limit = partitions * 48 + 16  # a position is at most 20 + 1 + 20 + 2 chars, and a '.'
    try:
        raw = base64.urlsafe_b64decode(cursor[1:] + "=" * (-len(cursor[1:]) % 4))
        unzip = zlib.decompressobj()
        text = unzip.decompress(raw, limit)
        if unzip.unconsumed_tail or not unzip.eof:
            return None
        return text.decode("ascii")
    except (ValueError, zlib.error):
        return None


def valid_cursor(status: str, cursor: str, partitions: int = 1) -> bool:
    """Whether `cursor` is one the view hands out ('' starts at the top). With many
    partitions it holds one position per partition, joined by '.' ('x': that one is done);
    a long one is packed (see `join_cursor`)."""
    if partitions == 1 or not cursor:
        return _valid_one(status, cursor)
    text = _unpacked(cursor, partitions)
    if text is None:
        return False
    parts = text.split(".")
    return len(parts) == partitions and all(p == DONE or _valid_one(status, p) for p in parts)


def split_cursor(cursor: str, partitions: int) -> list[str | None]:
    """A (valid) cursor as one position per partition (None: nothing left there)."""
    if partitions == 1:
        return [cursor]
    if not cursor:
        return [""] * partitions
    return [None if p == DONE else p for p in (_unpacked(cursor, partitions) or "").split(".")]


def join_cursor(positions: list[str | None]) -> str:
    """The cursor of per-partition positions: '' when every partition is done; with one
    partition, that partition's own position (the cursor a single-partition queue always had)."""
    if all(p is None for p in positions):
        return ""
    if len(positions) == 1:
        return positions[0] or ""
    text = ".".join(DONE if p is None else p for p in positions)
    if len(text) <= PACK_OVER:
        return text
    # many partitions: the positions share most of their digits, so they pack small
    packed = base64.urlsafe_b64encode(zlib.compress(text.encode("ascii"), 9)).decode("ascii")
    return PACKED + packed.rstrip("=")


def newest(entry: str) -> Key:
    """The order key of a stream entry, newest first."""
    ms, seq = entry_order(entry)
    return (-ms, -seq)


def position(cursor: str) -> tuple[str, int] | None:
    """A merged-streams cursor, `<entry id>@<stream index>`, as (entry id, index)."""
    entry, _, index = cursor.partition("@")
    if not entry or not index.isdigit():
        return None
    return entry, int(index)


def bound(after: tuple[str, int], index: int) -> str:
    """Where stream `index` resumes past the cursor: streams up to the cursor's own have
    shown its entry id already (exclusive bound), later ones not yet (inclusive)."""
    entry, at = after
    return f"({entry}" if index <= at else entry


#: One read of a view in one partition: (key, job id, cursor after it) per entry read, in
#: order (job id '' where the entry names no candidate: passed over, still a place to go on
#: from), the cursor after the read ('' when the source is exhausted), and the key up to
#: which it read.
Read = tuple[list[tuple[Key, str, str]], str, Key | None]


def merged(found: list[tuple[Key, str, str]], cut: Key | None) -> Read:
    """Candidates of several streams in one order, up to where every stream was read."""
    found.sort(key=lambda item: item[0])
    if cut is not None:
        found = [item for item in found if item[0] <= cut]
    batch = [(key, job_id, f"{entry}@{int(key[2])}") for key, entry, job_id in found]
    if cut is None or not found:
        return batch, "", None
    key, entry, _ = found[-1]
    return batch, f"{entry}@{int(key[2])}", key




def merge_reads(
    live: list[int], reads: list[Read]
) -> tuple[list[tuple[Key, int, str, str]], set[int]]:
    """The partitions' reads in one order, up to the cut: the least far any partition with
    more to read has read (past it, that partition's next read may hold entries that come
    first). Returns what is kept, as (key, partition, job id, cursor after it), and the
    partitions some of whose entries lay past the cut (to read again)."""
    cut: Key | None = None
    merged: list[tuple[Key, int, str, str]] = []
    for p, (batch, after, reach) in zip(live, reads):
        if after and reach is not None:
            cut = min(cut, (*reach, p)) if cut is not None else (*reach, p)
        merged += [((*key, p), p, job_id, at) for key, job_id, at in batch]
    merged.sort(key=lambda item: item[0])
    kept = [item for item in merged if cut is None or item[0] <= cut]
    return kept, {p for _, p, _, _ in merged[len(kept) :]}
