"""Side-by-side benchmark peers for streamjobs: one ``<name>_runner`` module per peer."""

from __future__ import annotations

import importlib

from ._peer import Peer

PEERS = ("streamjobs", "streamjobs_observed", "streamjobs_limited", "arq", "saq", "streaq",
         "taskiq", "rq", "celery", "dramatiq", "huey")  # fmt: skip
#: Variants of streamjobs itself: shown beside it, never counted as a peer to beat.
OWN = ("streamjobs", "streamjobs_observed", "streamjobs_limited")


def load(name: str) -> type[Peer]:
    """Import a peer's runner module (raises ImportError if the peer is not installed)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    module = importlib.import_module(f"benchpeers.{name}_runner")
    peer: type[Peer] = module.PEER
    return peer


__all__ = ["OWN", "PEERS", "Peer", "load"]
