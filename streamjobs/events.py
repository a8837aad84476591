"""Lifecycle events: to an optional in-process event bus, and (from the scripts) to a Redis
stream any process can follow."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Protocol

log = logging.getLogger("streamjobs.events")

class EventBus(Protocol):
    """Anything with `publish(event_type, payload)`, async or plain."""

    def publish(self, event_type: str, payload: dict[str, Any]) -> Any:
        """Receive one event; the payload carries `job_id`."""


async def publish(bus: EventBus | None, event_type: str, payload: dict[str, Any]) -> None:
    """Hand an event to the bus; a failing bus is logged, never allowed to break a job."""
    if bus is None:
        return
    try:
        outcome = bus.publish(event_type, payload)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        job_id = payload.get("job_id")
        log.exception("event bus failed to publish %s for job %s", event_type, job_id)
