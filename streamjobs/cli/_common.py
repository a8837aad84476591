"""What every command shares: the one CLI error, connecting to a queue, and output."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import orjson
from rich.console import Console

from .._drivers.sentinel import is_sentinel
from .._drivers.sentinel import redact as redact_sentinel
from ..async_worker import Timings
from ..errors import StreamJobsError
from ..redis_queue import RedisJobQueue
from ..service import JobService

#: How long a command waits for Redis to answer before it gives up.
CONNECT_TIMEOUT = 5.0


class CliError(Exception):
    """A failure the operator can fix: printed as one line, exit code 1, no traceback."""


def redact(url: str) -> str:
    """The URL with any password masked, fit for a message."""
    if is_sentinel(url):  # many hosts in one netloc: urlsplit cannot read its port
        return redact_sentinel(url)
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<unparsable url>"
    return urlunsplit(parts._replace(netloc=netloc))


async def connect(queue: RedisJobQueue, within: float | None = CONNECT_TIMEOUT) -> None:
    """Connect within `within` seconds; every way it can fail becomes one CliError line.

    `within=None` opens no cancel scope around the connect and leaves the bound to the
    driver's own deadline: a worker's coredis pool must be entered, and later left, by its
    task with no scope opened or closed in between (see `coredis_driver`)."""
    where = redact(queue.redis_url)
    try:
        if within is None:
            await queue.connect()
        else:
            with anyio.fail_after(within):
                await queue.connect()
    except TimeoutError:
        raise CliError(f"Redis at {where} did not answer within {within:g}s") from None
    except ValueError as exc:  # redis-py refuses a malformed URL with ValueError
        raise CliError(f"invalid Redis URL {where}: {exc}") from None
    except StreamJobsError as exc:
        raise CliError(f"cannot use Redis at {where}: {exc}") from None


@asynccontextmanager
async def open_service(
    url: str | None, name: str, key_prefix: str, partitions: int | None = None,
    wait_replicas: int = 0,
) -> AsyncIterator[JobService]:
    """A connected service on one queue, for commands that inspect or submit (no workers)."""
    queue = RedisJobQueue(url, key_prefix, name=name, partitions=partitions,
                          wait_replicas=wait_replicas)  # fmt: skip
    await connect(queue)
    try:
        yield JobService(queue=queue, timings=Timings())
    finally:
        with anyio.CancelScope(shield=True):
            await queue.close()


def print_json(value: Any) -> None:
    """One JSON document on stdout (datetimes as ISO 8601), for scripts."""
    text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def console() -> Console:
    """The console tables go to (stdout; no colour when it is not a terminal)."""
    return Console(highlight=False)


def err_console() -> Console:
    """The console progress bars and notes go to (stderr), so stdout stays parseable."""
    return Console(stderr=True, highlight=False)
