"""Running one job: its handler under its timeout, and the outcome it ends with."""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import anyio
import anyio.from_thread

from ._codec import dumps
from ._outcome import Outcome, RetryPolicy, Verdict, after_error, describe, trace
from ._threads import HandlerThreads, OnStart
from .errors import JobFailed
from .models import JobDefinition
from .redis_queue import Delivery

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

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


async def _call(
    d: Delivery, handler: Handler, progress: ProgressCallback, threads: HandlerThreads,
    on_start: OnStart,
) -> Any:  # fmt: skip
    assert d.job is not None
    if is_async(handler):
        on_start(d, False)
        return await cast(AsyncHandler, handler)(d.job, progress)
    call = partial(cast(SyncHandler, handler), d.job, _sync_progress(progress))
    return await threads.run(d, call, on_start)


def cancelled_by_caller(exc: BaseException) -> bool:
    """True when `exc` is a cancellation and a scope around the caller is cancelled: the
    pool's own doing. A handler raising CancelledError itself (or awaiting something somebody
    else cancelled) gets False: its attempt failed, it is not a stop."""
    if anyio.current_effective_deadline() != -math.inf:
        return False
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(cancelled) is not None
    return isinstance(exc, cancelled)


def _policy(job: JobDefinition) -> RetryPolicy:
    return RetryPolicy(job.max_retries, job.retry_delay, job.retry_backoff)


def deadline(d: Delivery) -> float:
    """When (anyio's clock) the attempt must end: now + the job's timeout."""
    timeout = d.job.timeout if d.job else None
    return anyio.current_time() + timeout if timeout else math.inf


def timed_out(d: Delivery) -> Outcome:
    """The outcome of an attempt past its deadline (cancelled, or its thread's late result
    refused): a failed attempt."""
    assert d.job is not None and d.job.timeout is not None
    error = f"TimeoutError: the job ran past its {d.job.timeout:g}s timeout"
    return after_error(_policy(d.job), int(d.attempt), error, permanent=False)


def _raised(d: Delivery, job: JobDefinition, exc: BaseException, *, permanent: bool) -> Outcome:
    """The outcome of an attempt whose handler raised, with where it raised."""
    return after_error(_policy(job), int(d.attempt), describe(exc), permanent=permanent,
                       traceback=trace(exc))  # fmt: skip


async def execute(
    d: Delivery, handler: Handler | None, progress: ProgressCallback, threads: HandlerThreads,
    on_start: OnStart,
) -> Completed | Outcome:  # fmt: skip
    """Run the handler for a delivery, calling `on_start` as it starts (after waiting for a
    thread, for a plain def); return how the attempt ended. Exceptions become
    outcomes, even BaseExceptions a handler raises (SystemExit, KeyboardInterrupt, a
    CancelledError of its own); only the caller's own cancellation passes through."""
    job = d.job
    if job is None:
        error = "undecodable payload: the job record cannot be read"
        return Outcome(Verdict.DEAD_LETTER, error, reason="undecodable payload")
    if handler is None:
        error = f"unknown handler {job.handler!r}: no worker registered it"
        return Outcome(Verdict.DEAD_LETTER, error, reason="unknown handler")
    try:
        result = await _call(d, handler, progress, threads, on_start)
    except JobFailed as exc:
        return _raised(d, job, exc, permanent=True)
    except Exception as exc:
        return _raised(d, job, exc, permanent=False)
    except BaseException as exc:
        if cancelled_by_caller(exc):
            raise  # the pool's timeout, stop or cancel: the caller decides the outcome
        return _raised(d, job, exc, permanent=False)
    try:
        return Completed(dumps(result))
    except TypeError as exc:
        error = f"result is not JSON-serializable: {exc}"
        return Outcome(Verdict.DEAD_LETTER, error, reason="unserializable result")
