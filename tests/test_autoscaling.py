"""What an autoscaler such as KEDA's Redis Streams scaler reads follows the queue: a priority
stream's consumer-group lag (`XINFO GROUPS`, jobs waiting) and its pending entries (`XPENDING`,
jobs running), as jobs arrive and workers drain them."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis

from streamjobs import JobDefinition, JobService
from streamjobs._keys import GROUP


def lag(raw: redis.Redis, stream: str) -> int | None:
    """The group's lag as `XINFO GROUPS` reports it: what KEDA's `lagCount` reads."""
    for group in raw.xinfo_groups(stream):
        if group["name"] == GROUP:
            return group.get("lag")  # type: ignore[no-any-return]
    raise AssertionError(f"no group {GROUP} on {stream}")


def pending(raw: redis.Redis, stream: str) -> int:
    """Entries delivered and not yet acknowledged: what KEDA's `pendingEntriesCount` reads."""
    return int(raw.xpending(stream, GROUP)["pending"])


@pytest.mark.anyio
async def test_stream_lag_and_pending_entries_follow_jobs_as_they_arrive_and_drain(
    svc: JobService, raw: redis.Redis
) -> None:
    if tuple(int(n) for n in raw.info("server")["redis_version"].split(".")[:2]) < (7, 0):
        pytest.skip("XINFO GROUPS reports lag from Redis 7.0 (KEDA's lagCount needs it too)")
    high = svc.queue.keys.streams[1]
    release = anyio.Event()

    async def held(job: JobDefinition, progress: Any) -> None:
        await release.wait()

    svc.register_handler("held", held)
    for _ in range(5):
        await svc.submit_job("held", priority="high")
    assert lag(raw, high) == 5 and pending(raw, high) == 0  # five waiting, none running

    await svc.start_workers(2)
    with anyio.fail_after(10):
        while pending(raw, high) < 2:  # noqa: ASYNC110 - Redis tells no event of it
            await anyio.sleep(0.02)
    assert lag(raw, high) == 3 and pending(raw, high) == 2  # two running, three waiting

    release.set()  # every job now finishes at once
    with anyio.fail_after(10):
        while lag(raw, high) or pending(raw, high):  # noqa: ASYNC110 - as above
            await anyio.sleep(0.02)
    assert lag(raw, high) == 0 and pending(raw, high) == 0  # drained: the scaler may scale in
    assert (await svc.get_metrics())["queue"]["completed"] == 5
