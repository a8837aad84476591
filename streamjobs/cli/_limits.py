"""`streamjobs limits set|list|remove`: the concurrency and rate limits per limit key."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..models import LimitInfo
from ..service import JobService
from . import _render
from ._common import CliError, console, print_json


def limits_dicts(limits: list[LimitInfo]) -> list[dict[str, Any]]:
    """Every limit as JSON-ready fields."""
    return [dataclasses.asdict(lim) for lim in limits]


async def set_limit(svc: JobService, opts: Any) -> int:
    """`limits set KEY [--concurrency N] [--rate R]`."""
    if opts.concurrency is None and opts.rate is None:
        raise CliError("limits set needs --concurrency, --rate or both")
    await svc.set_limit(opts.key, concurrency=opts.concurrency, rate=opts.rate)
    [lim] = [lim for lim in await svc.get_limits() if lim.key == opts.key]
    if opts.json:
        print_json(dataclasses.asdict(lim))
    else:
        console().print(
            f"{lim.key}: concurrency {lim.concurrency or '-'}, rate {lim.rate or '-'}",
            markup=False,
        )
    return 0


async def list_limits(svc: JobService, as_json: bool) -> int:
    """`limits list`: every limit with what it holds now."""
    limits = await svc.get_limits()
    if as_json:
        print_json(limits_dicts(limits))
    else:
        console().print(_render.limits_table(limits_dicts(limits)))
    return 0


async def remove(svc: JobService, key: str, as_json: bool) -> int:
    """`limits remove KEY`: its waiting jobs are queued at once; exit 1 when it had none."""
    if not await svc.remove_limit(key):
        raise CliError(f"no limit on key {key!r} on queue {svc.queue.keys.name!r}")
    if as_json:
        print_json({"key": key, "removed": True})
    else:
        console().print(f"{key}: removed", markup=False)
    return 0
