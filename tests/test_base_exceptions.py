"""Handlers that raise BaseExceptions (SystemExit, KeyboardInterrupt, a cancellation of their
own): each such attempt counts, and the pool goes on serving other jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from streamjobs import JobDefinition, JobService, JobStatus

pytestmark = pytest.mark.anyio


class Custom(BaseException):
    """A BaseException that is neither an exit nor a cancellation."""


def _raiser(exc: Callable[[], BaseException]) -> Any:
    async def handler(job: JobDefinition, progress: Any) -> None:
        raise exc()

    return handler


async def _leaked_cancellation(job: JobDefinition, progress: Any) -> None:
    """Re-raises, outside its scope, the cancellation of a scope the handler itself cancelled."""
    caught: BaseException | None = None
    with anyio.CancelScope() as inner:
        inner.cancel()
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class() as exc:
            caught = exc
    assert caught is not None
    raise caught


async def _ok(job: JobDefinition, progress: Any) -> str:
    return "served"


async def _dead_letters_then_serves(svc: JobService, handler: Any, named: str) -> None:
    svc.register_handler("raises", handler)
    svc.register_handler("ok", _ok)
    await svc.start_workers(2)
    job_id = await svc.submit_job("raises", max_retries=1, retry_delay=0.05)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert (result.status, result.attempts) == (JobStatus.DEAD_LETTER, 2)
    assert result.error is not None and result.error.startswith(named)
    [letter] = await svc.get_dead_letters()
    assert letter.id == job_id
    after = await svc.submit_job("ok")
    assert (await svc.wait_for_result(after, timeout=10)).result == "served"


@pytest.mark.parametrize(
    ("exc", "named"),
    [
        (lambda: SystemExit(3), "SystemExit: 3"),
        (KeyboardInterrupt, "KeyboardInterrupt"),
        (lambda: Custom("odd"), "Custom: odd"),
    ],
    ids=["SystemExit", "KeyboardInterrupt", "custom"],
)
async def test_a_handler_raising_a_base_exception_counts_attempts_and_the_pool_serves_on(
    svc: JobService, exc: Callable[[], BaseException], named: str
) -> None:
    await _dead_letters_then_serves(svc, _raiser(exc), named)


async def test_a_plain_def_handler_raising_system_exit_in_its_thread_counts_attempts(
    svc: JobService,
) -> None:
    def exits(job: JobDefinition, progress: Any) -> None:
        raise SystemExit("from a thread")

    await _dead_letters_then_serves(svc, exits, "SystemExit: from a thread")


async def test_a_cancellation_a_handler_leaks_from_its_own_scope_is_a_failed_attempt(
    svc: JobService,
) -> None:
    await _dead_letters_then_serves(svc, _leaked_cancellation, "Cancel")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_handler_raising_cancelled_error_itself_is_a_failed_attempt(
    svc: JobService,
) -> None:
    await _dead_letters_then_serves(svc, _raiser(asyncio.CancelledError), "CancelledError")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_handler_awaiting_a_future_somebody_cancelled_is_a_failed_attempt(
    svc: JobService,
) -> None:
    async def awaits_cancelled(job: JobDefinition, progress: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    await _dead_letters_then_serves(svc, awaits_cancelled, "CancelledError")


async def test_a_job_past_its_timeout_is_still_cancelled_by_the_pool(svc: JobService) -> None:
    """The pool's own cancellation is not mistaken for a handler's: the timeout still wins."""

    async def hang(job: JobDefinition, progress: Any) -> None:
        await anyio.sleep(30)

    svc.register_handler("hang", hang)
    await svc.start_workers(1)
    job_id = await svc.submit_job("hang", timeout=0.2, max_retries=0)
    result = await svc.wait_for_result(job_id, timeout=10)
    assert result.status is JobStatus.DEAD_LETTER
    assert result.error == "TimeoutError: the job ran past its 0.2s timeout"
