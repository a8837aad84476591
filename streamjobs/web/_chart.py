"""The overview's chart: completed and failed per minute over the last hour, from counters
each partition samples once a minute (record_minute.lua), summed over the partitions."""

from __future__ import annotations

#: Minutes the throughput chart shows.
WINDOW_MINUTES = 60


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


def add_charts(
    charts: list[list[tuple[int, int | None, int | None]]],
) -> list[tuple[int, int | None, int | None]]:
    """Per-partition charts summed minute by minute; a minute no partition knows stays None."""
    out = []
    for column in zip(*charts):
        known = [(c, f) for _, c, f in column if c is not None and f is not None]
        if known:
            out.append((column[0][0], sum(c for c, _ in known), sum(f for _, f in known)))
        else:
            out.append((column[0][0], None, None))
    return out
