"""Running one script many times in a pipeline: the rule every driver shares, sync or async.

A NOSCRIPT reply means that call did not run: the driver loads the script and sends only
those calls again (once). Each call's outcome is kept in its place, so that a caller whose
calls each write something (a bulk submit) learns exactly which ran: a reply, an error Redis
answered with (the call did not run), or `ReplyLost` where the connection failed before the
reply came back. Drivers do the I/O; this keeps the books.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import StreamJobsError


class ReplyLost(StreamJobsError):
    """A call went out but its reply never came back: it may or may not have run.
    `error` is the connection's failure."""

    def __init__(self, error: StreamJobsError) -> None:
        super().__init__(f"the reply was lost, the call may or may not have run: {error}")
        self.error = error


class ReloadingCalls:
    """The outcomes of `count` pipelined script calls, and which still have to be sent."""

    def __init__(self, count: int, no_script: type[Exception]) -> None:
        self.replies: list[Any] = [None] * count
        self.todo: Sequence[int] = range(count)
        self._no_script = no_script
        self._rounds = 0

    def record(self, replies: Sequence[Any]) -> bool:
        """Take the replies to the calls in `todo`; True when some must be sent again after
        the script is loaded."""
        for i, reply in zip(self.todo, replies):
            self.replies[i] = reply
        self.todo = [i for i in self.todo if isinstance(self.replies[i], self._no_script)]
        self._rounds += 1
        return bool(self.todo) and self._rounds < 2

    def lose(self, error: StreamJobsError) -> None:
        """The calls in `todo` went out, and the connection failed before their replies came."""
        for i in self.todo:
            self.replies[i] = ReplyLost(error)
        self.todo = []

    def refuse(self, error: StreamJobsError) -> None:
        """The calls in `todo` did not run (their script could not be loaded)."""
        for i in self.todo:
            self.replies[i] = error
        self.todo = []

    def outcomes(self, translate: Callable[[Exception], StreamJobsError]) -> list[Any]:
        """Every call's outcome in order; a client's error reply translated (not raised)."""
        return [
            translate(r) if isinstance(r, Exception) and not isinstance(r, StreamJobsError) else r
            for r in self.replies
        ]

    async def run(
        self,
        send: Callable[[Sequence[int]], Awaitable[Sequence[Any]]],
        load: Callable[[], Awaitable[Any]],
        *,
        failure_loses: bool = True,
    ) -> None:
        """The async drivers' loop: `send` the calls in `todo` (the replies, in order), `load`
        the script after NOSCRIPT and send those again once. A failed send loses the replies
        of what went out (`failure_loses`), or refused them when the driver knows nothing
        went out; a failed load refuses the calls still to run."""
        while self.todo:
            try:
                replies = await send(self.todo)
            except StreamJobsError as exc:
                (self.lose if failure_loses else self.refuse)(exc)
                return
            if not self.record(replies):
                return
            try:
                await load()
            except StreamJobsError as exc:
                self.refuse(exc)
