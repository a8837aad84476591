"""Running one script many times in a pipeline: the rule every driver shares, sync or async.

A NOSCRIPT reply means that call did not run: the driver loads the script and sends only
those calls again (once). Drivers do the I/O; this keeps the books.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ReloadingCalls:
    """The replies of `count` pipelined script calls, and which still have to be sent."""

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

    def result(self) -> list[Any]:
        """Every reply; raises the first error among them."""
        for reply in self.replies:
            if isinstance(reply, Exception):
                raise reply
        return self.replies
