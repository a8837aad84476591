"""Side-by-side benchmark peers for streamjobs: one ``<name>_runner`` module per peer."""

from __future__ import annotations

import importlib

from ._peer import Peer

PEERS = ("streamjobs", "arq", "saq", "streaq", "taskiq", "rq", "celery", "dramatiq", "huey")


def load(name: str) -> type[Peer]:
    """Import a peer's runner module (raises ImportError if the peer is not installed)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    module = importlib.import_module(f"benchpeers.{name}_runner")
    peer: type[Peer] = module.PEER
    return peer


__all__ = ["PEERS", "Peer", "load"]
