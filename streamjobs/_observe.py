"""The seam where metrics and traces watch jobs: submits, attempts and reclaims.

An `Observer` sees each submit (and may add fields to the jobs it carries, as tracing adds
its trace context), each attempt from start to outcome, and each batch of jobs taken over
from dead workers. `Observers` fans out to those registered; with none it is falsy, and the
pool and the service skip it at the cost of one truth test per job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from ._codec import NewJob
from ._outcome import Outcome, Verdict
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .redis_queue import Delivery

#: How an attempt ended, as metrics and traces name it; "released": handed back unfinished
#: (its worker stopped, or lost its lease), so it runs again.
OUTCOMES = ("completed", "failed", "retried", "dead_letter", "cancelled", "released")


class Attempt(Protocol):
    """One attempt as an observer follows it."""

    def running(self) -> AbstractContextManager[object]:
        """Entered around the handler, in the task that runs it (a trace's current span)."""

    def ended(self, outcome: str, error: str | None, detail: str | None) -> None:
        """The attempt's outcome (one of OUTCOMES); `detail` is the retry delay or the
        dead-letter reason, when there is one."""


class Observer(Protocol):
    """Something that watches a queue's jobs: metrics, traces."""

    @property
    def active(self) -> bool:
        """False while it would record nothing (tracing with no tracer provider set)."""

    def submitting(
        self, queue: str, jobs: Sequence[NewJob]
    ) -> AbstractContextManager[Sequence[NewJob]]:
        """Entered around a submit; yields the jobs to write (the same, or with fields added)."""

    def attempt(self, queue: str, d: Delivery) -> Attempt:
        """An attempt starts: `d.record` is the job as start.lua returned it."""

    def reclaimed(self, queue: str, count: int) -> None:
        """`count` jobs were taken over from workers whose lease lapsed."""


def observed(outcome: Outcome) -> tuple[str, str | None, str | None]:
    """An unsuccessful attempt's outcome, error and detail, as `Attempt.ended` takes them."""
    if outcome.verdict is Verdict.RETRY:
        return "retried", outcome.error, f"{outcome.delay:g}"
    if outcome.verdict is Verdict.FAILED:
        return "failed", outcome.error, None
    return "dead_letter", outcome.error, outcome.reason


class Attempts:
    """Every observer's view of one attempt; `done` once its outcome was told."""

    def __init__(self, attempts: list[Attempt]) -> None:
        self._attempts = attempts
        self._entered: list[AbstractContextManager[object]] = []
        self.done = False

    def running(self) -> Attempts:
        """Entered around the handler: every observer's `running()` in turn (a plain
        context manager, not a generator: it is entered once per job)."""
        return self

    def __enter__(self) -> None:
        self._entered = [attempt.running() for attempt in self._attempts]
        for manager in self._entered:
            manager.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for manager in reversed(self._entered):
            manager.__exit__(kind, exc, tb)

    def ended(self, outcome: str, error: str | None, detail: str | None) -> None:
        self.done = True
        for attempt in self._attempts:
            attempt.ended(outcome, error, detail)


class Observers:
    """The observers of one queue's service and pool; falsy while there are none."""

    def __init__(self, queue: str, observers: Sequence[Observer] = ()) -> None:
        self.queue = queue
        self._observers = list(observers)

    def __bool__(self) -> bool:
        return any(observer.active for observer in self._observers)

    def nest_traces(self, trace_parent: str) -> None:
        """How an attempt's span relates to its submit's: "link" (the default) or "child"."""
        if trace_parent not in ("link", "child"):
            raise ConfigurationError(
                f"trace_parent must be 'link' or 'child', not {trace_parent!r}"
            )
        for observer in self._observers:
            if hasattr(observer, "trace_parent"):
                observer.trace_parent = trace_parent

    def add(self, observer: Observer) -> None:
        """Watch this queue's jobs with `observer` too."""
        self._observers.append(observer)

    @contextlib.contextmanager
    def submitting(self, jobs: Sequence[NewJob]) -> Iterator[Sequence[NewJob]]:
        """Around a submit: yields the jobs to write, as the observers made them."""
        with contextlib.ExitStack() as stack:
            for observer in self._observers:
                if observer.active:
                    jobs = stack.enter_context(observer.submitting(self.queue, jobs))
            yield jobs

    def attempt(self, d: Delivery) -> Attempts:
        """Every observer's view of an attempt that starts now."""
        active = [observer for observer in self._observers if observer.active]
        return Attempts([observer.attempt(self.queue, d) for observer in active])

    def reclaimed(self, count: int) -> None:
        for observer in self._observers:
            observer.reclaimed(self.queue, count)


def default_observers(queue: str) -> Observers:
    """The observers every service starts with: tracing, where `opentelemetry-api` is
    installed (it spans only once the app has set a tracer provider)."""
    try:
        from .tracing import Tracing
    except ImportError:
        return Observers(queue)
    return Observers(queue, [Tracing()])
