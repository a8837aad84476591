"""Running one job: its handler under its timeout, and the outcome it ends with."""

from __future__ import annotations

import contextlib
import inspect
import math
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import anyio
import anyio.from_thread
import anyio.to_thread

from ._codec import dumps
from ._outcome import Outcome, RetryPolicy, Verdict, after_error, describe
from .errors import JobFailed
from .models import JobDefinition
from .redis_queue import Delivery

ProgressCallback = Callable[..., Awaitable[None]]
AsyncHandler = Callable[[JobDefinition, ProgressCallback], Awaitable[Any]]
SyncHandler = Callable[[JobDefinition, Callable[..., None]], Any]
Handler = AsyncHandler | SyncHandler


@dataclass(frozen=True)
class Completed:
    """A successful attempt and its result as JSON."""

    result_json: str


def is_async(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions (and objects whose __call__ is one); asked once per
    handler, as the answer cannot change."""
    try:
        return _ASYNC[fn]
    except (KeyError, TypeError):
        pass
    call = getattr(fn, "__call__", None)  # noqa: B004 - want the bound __call__
    answer = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
    with contextlib.suppress(TypeError):  # unhashable callables are asked every time
        _ASYNC[fn] = answer
    return answer


_ASYNC: weakref.WeakKeyDictionary[Callable[..., Any], bool] = weakref.WeakKeyDictionary()


def _sync_progress(progress: ProgressCallback) -> Callable[..., None]:
    def report(current: Any = None, total: Any = None, message: Any = None) -> None:
        async def send() -> None:
            await progress(current, total, message)

        anyio.from_thread.run(send)

    return report


async def _call(handler: Handler, job: JobDefinition, progress: ProgressCallback) -> Any:
    if is_async(handler):
        return await cast(AsyncHandler, handler)(job, progress)
    call = partial(cast(SyncHandler, handler), job, _sync_progress(progress))
    return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)


def _policy(job: JobDefinition) -> RetryPolicy:
    return RetryPolicy(job.max_retries, job.retry_delay, job.retry_backoff)


def deadline(d: Delivery) -> float:
    """When (anyio's clock) the attempt must end: now + the job's timeout."""
    timeout = d.job.timeout if d.job else None
    return anyio.current_time() + timeout if timeout else math.inf


def timed_out(d: Delivery) -> Outcome:
    """The outcome of an attempt cancelled at its deadline: a failed attempt."""
    assert d.job is not None and d.job.timeout is not None
    error = f"TimeoutError: the job ran past its {d.job.timeout:g}s timeout"
    return after_error(_policy(d.job), int(d.attempt), error, permanent=False)


async def execute(
    d: Delivery, handler: Handler | None, progress: ProgressCallback
) -> Completed | Outcome:
    """Run the handler for a delivery; return how the attempt ended. Exceptions become
    outcomes; cancellation (the caller's deadline scope) passes through."""
    job = d.job
    if job is None:
        error = "undecodable payload: the job record cannot be read"
        return Outcome(Verdict.DEAD_LETTER, error, reason="undecodable payload")
    if handler is None:
        error = f"unknown handler {job.handler!r}: no worker registered it"
        return Outcome(Verdict.DEAD_LETTER, error, reason="unknown handler")
    try:
        result = await _call(handler, job, progress)
    except JobFailed as exc:
        return after_error(_policy(job), int(d.attempt), describe(exc), permanent=True)
    except Exception as exc:
        return after_error(_policy(job), int(d.attempt), describe(exc), permanent=False)
    try:
        return Completed(dumps(result))
    except TypeError as exc:
        error = f"result is not JSON-serializable: {exc}"
        return Outcome(Verdict.DEAD_LETTER, error, reason="unserializable result")
