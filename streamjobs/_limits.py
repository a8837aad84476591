"""Limits per limit key, checked and encoded without I/O: a concurrency cap and a rate
("100/s", "600/m", "10000/h": at most N starts in any window of that period)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .errors import ConfigurationError
from .models import LimitInfo

#: Window lengths (ms) by the unit a rate is given in.
WINDOWS = {"s": 1_000, "m": 60_000, "h": 3_600_000}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
_KEY_MAX = 200


def check_key(key: object) -> str:
    """A limit key as given; ConfigurationError unless a non-empty str without spaces."""
    if not isinstance(key, str) or not key or len(key) > _KEY_MAX or any(c.isspace() for c in key):
        raise ConfigurationError(
            f"limit key {key!r} must be a non-empty str of at most {_KEY_MAX} characters "
            "without spaces"
        )
    return key


def parse_rate(rate: object) -> tuple[int, int]:
    """A rate as (starts, window in ms); ConfigurationError naming what is wrong."""
    m = _RATE.match(rate) if isinstance(rate, str) else None
    if m is None or int(m.group(1)) < 1:
        raise ConfigurationError(
            f"rate {rate!r} must be '<N>/s', '<N>/m' or '<N>/h' with N >= 1 (e.g. '100/s')"
        )
    return int(m.group(1)), WINDOWS[m.group(2)]


def limit_args(key: object, concurrency: object, rate: object) -> tuple[str, int, int, int]:
    """set_limit.lua's arguments: key, concurrency, rate, window (ms), 0 for no bound."""
    name = check_key(key)
    if concurrency is None and rate is None:
        raise ConfigurationError("set_limit needs a concurrency, a rate or both")
    cap = 0
    if concurrency is not None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigurationError(f"concurrency {concurrency!r} must be an int >= 1")
        cap = concurrency
    starts, window = parse_rate(rate) if rate is not None else (0, 0)
    return name, cap, starts, window


def rate_text(starts: int, window_ms: int) -> str | None:
    """A rate as set ("100/s"), None for none."""
    if not starts:
        return None
    unit = next((u for u, ms in WINDOWS.items() if ms == window_ms), None)
    return f"{starts}/{unit}" if unit else f"{starts}/{window_ms}ms"


def limits_from(replies: Sequence[Sequence[Any]]) -> list[LimitInfo]:
    """get_limits.lua's replies, one per partition, as one LimitInfo per key (by key)."""
    merged: dict[str, list[Any]] = {}
    for reply in replies:
        for row in reply:
            key, cap, starts, window, running, waiting = row[:6]
            cap, starts, window = int(cap), int(starts), int(window)
            rec = merged.setdefault(str(key), [cap, starts, window, 0, 0])
            rec[3] += int(running)
            rec[4] += int(waiting)
    out = []
    for key, (cap, starts, window, running, waiting) in sorted(merged.items()):
        held = None
        if waiting and cap and running >= cap:
            held = "concurrency"
        elif waiting and starts:  # parked until its window opens (the promoter moves them)
            held = "rate"
        out.append(LimitInfo(key, cap or None, rate_text(starts, window), running, waiting, held))
    return out
