"""Waiting before trying Redis again: the one backoff every loop of a pool uses."""

from __future__ import annotations

import logging
import random

import anyio

from ._outcome import reconnect_delay

log = logging.getLogger("streamjobs.worker")


async def pause(doing: str, exc: Exception, failures: int) -> None:
    """Log what failed and sleep before the next try: 0.1 s doubling to 5 s, jittered, so a
    fleet of pools does not come back to a recovering Redis all at once."""
    delay = reconnect_delay(failures, random.random())
    log.warning("%s failed (%s); trying again in %.2fs", doing, exc, delay)
    await anyio.sleep(delay)
