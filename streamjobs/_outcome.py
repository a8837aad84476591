"""What happens after a failed attempt: a pure decision, tested without Redis."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import Enum

#: No retry waits longer than this, whatever the backoff says (seconds).
MAX_RETRY_DELAY = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a job is retried (defaults as in the guide)."""

    max_retries: int = 3
    retry_delay: float = 1.0
    retry_backoff: float = 2.0

    def delay_for(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based), capped at 300 s."""
        if retry < 1:
            raise ValueError("retry numbers start at 1")
        try:
            delay = self.retry_delay * self.retry_backoff ** (retry - 1)
        except OverflowError:
            return MAX_RETRY_DELAY
        return min(delay, MAX_RETRY_DELAY)


class Verdict(str, Enum):
    """The three ways an unsuccessful attempt can end."""

    RETRY = "retry"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Outcome:
    """The decision for one unsuccessful attempt; `delay` is seconds, for RETRY only."""

    verdict: Verdict
    error: str
    delay: float = 0.0
    reason: str = ""
    traceback: str = ""  # where the handler raised, for the record (not the events)


def after_error(
    policy: RetryPolicy, attempts: int, error: str, *, permanent: bool, traceback: str = ""
) -> Outcome:
    """Decide what an attempt that raised becomes: attempts counts this one (1 = first run)."""
    if permanent:
        return Outcome(Verdict.FAILED, error, traceback=traceback)
    retry = attempts  # the first retry follows the first attempt
    if retry > policy.max_retries:
        return Outcome(Verdict.DEAD_LETTER, error, reason="retries exhausted", traceback=traceback)
    return Outcome(Verdict.RETRY, error, policy.delay_for(retry), traceback=traceback)


def reconnect_delay(failures: int, jitter: float = 1.0) -> float:
    """Seconds to wait before trying Redis again after `failures` failures in a row:
    0.1 s, doubling, at most 5 s; `jitter` (0 to 1, random) takes up to half of it off, so
    that the pools of a fleet do not all come back to a recovering Redis at once."""
    return min(0.05 * 2.0 ** min(failures, 10), 5.0) * (0.5 + 0.5 * jitter)


#: Characters of a traceback a job record keeps (its end, where the error was raised).
MAX_TRACEBACK = 8_000


def trace(exc: BaseException) -> str:
    """The traceback of what a handler raised, as Python prints it, cut to its last
    MAX_TRACEBACK characters: kept in the job's record for whoever looks into the failure."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= MAX_TRACEBACK else "...\n" + text[-MAX_TRACEBACK:]


def describe(exc: BaseException) -> str:
    """One line naming an exception: `ValueError: bad input`."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
