"""The event loop and driver pairs a user can get, as fixtures a test module imports to run
each of its tests on every pair: `from tests._combos import COMBOS, anyio_backend, combo`."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest

COMBOS = [
    ("asyncio", "resp"), ("asyncio", "redis-py"), ("asyncio", "coredis"), ("trio", "coredis"),
]  # fmt: skip


@pytest.fixture(params=COMBOS, ids=["-".join(c) for c in COMBOS])
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(event loop, driver name) for this run of the test."""
    return tuple(request.param)  # type: ignore[return-value]


@pytest.fixture
def anyio_backend(combo: tuple[str, str]) -> Iterator[str]:
    """The combo's event loop for anyio's plugin."""
    yield combo[0]
    if combo[0] == "trio":  # coredis' unstarted connections warn when collected (conftest)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
