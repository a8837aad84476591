"""The interface each peer module implements for the harness (one subclass per peer)."""

from __future__ import annotations

import abc
import importlib.metadata
from collections.abc import Sequence
from typing import ClassVar

JOB_TIMEOUT_S = 10
"""Per-job timeout for peers whose API takes one (recovery depends on it for some peers)."""
JOB_RETRIES = 3
"""Retries after the first attempt, where the peer's API takes a count (recovery needs one)."""


class Peer(abc.ABC):
    """A producer for one peer plus the command line that runs one of its workers.

    Sync peers implement the async methods with blocking calls: the harness runs nothing else
    concurrently, so this measures the sync client itself, with no thread hop.
    """

    name: ClassVar[str]
    dist: ClassVar[str]
    settings: ClassVar[dict[str, object]] = {}
    has_bulk: ClassVar[bool] = False
    is_async: ClassVar[bool] = True

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def version(cls) -> str:
        try:
            return importlib.metadata.version(cls.dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    async def open(self) -> None:
        """Connect the producer (called after the benchmark Redis was flushed)."""
        return None

    async def close(self) -> None:
        """Release the producer's connections."""
        return None

    @abc.abstractmethod
    async def submit(self, i: int, sleep: float = 0.0) -> None:
        """Enqueue one ``job(i, sleep)`` through the peer's one-job API."""

    async def submit_bulk(self, ids: Sequence[int]) -> None:
        """Enqueue ``job(i, 0)`` for every id through the peer's bulk API, if it has one."""
        raise NotImplementedError(f"{self.name} has no bulk enqueue API")

    @abc.abstractmethod
    def worker_command(self) -> list[str]:
        """argv for one worker process at the peer's best concurrency (cwd = scripts/)."""
