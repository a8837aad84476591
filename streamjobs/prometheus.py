"""Prometheus exposition of a queue's gauges (`pip install 'streamjobs[prometheus]'`).

`QueueCollector` reads one metrics snapshot per scrape (one script call, so every number in a
scrape is from the same instant) and exposes it as gauges; `queue_metrics_server` serves them
at `/metrics`, as `streamjobs metrics --port 9808` does. Labels carry no job ids, arguments or
host names: a scrape's size does not grow with the work the queue does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .errors import ConfigurationError, StreamJobsError
from .sync import SyncJobClient

try:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ConfigurationError(
        "Prometheus metrics need the prometheus extra: pip install 'streamjobs[prometheus]'"
    ) from exc

log = logging.getLogger("streamjobs.prometheus")

#: Queue states by priority level, as `get_metrics()` reports them.
_BY_PRIORITY = {"pending": "by_priority", "running": "running_by_priority"}
#: Queue states `get_metrics()` counts for the queue as a whole (`priority="all"`).
_WHOLE = {"scheduled": "scheduled", "retrying": "retrying", "dead_letter": "dead_letter"}


class QueueCollector(Collector):
    """The gauges of one queue, read from Redis at each scrape."""

    def __init__(self, client: SyncJobClient) -> None:
        self._client = client
        self._queue = client.queue.keys.name

    def describe(self) -> Iterable[Any]:
        """Nothing up front: registering the collector must not read Redis."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One snapshot, as gauges; `streamjobs_queue_up` 0 when Redis could not be read."""
        up = GaugeMetricFamily(
            "streamjobs_queue_up", "1 when the last scrape read the queue from Redis, else 0",
            labels=["queue"],
        )  # fmt: skip
        try:
            metrics = self._client.get_metrics()
        except StreamJobsError as exc:
            log.warning("scrape of queue %r failed: %s", self._queue, exc)
            up.add_metric([self._queue], 0)
            yield up
            return
        up.add_metric([self._queue], 1)
        yield up
        yield from self._gauges(metrics)

    def _gauges(self, metrics: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
        queue, workers, name = metrics["queue"], metrics["workers"], self._queue
        jobs = GaugeMetricFamily(
            "streamjobs_queue_jobs",
            "Jobs in the queue by state; pending and running per priority, the other states "
            'for the whole queue (priority="all")',
            labels=["queue", "priority", "state"],
        )
        for state, field in _BY_PRIORITY.items():
            for priority, count in queue[field].items():
                jobs.add_metric([name, priority, state], count)
        for state, field in _WHOLE.items():
            jobs.add_metric([name, "all", state], queue[field])
        yield jobs
        oldest = GaugeMetricFamily(
            "streamjobs_queue_oldest_age_seconds",
            "How long the oldest pending job has waited in its stream (0 when none waits)",
            labels=["queue"],
        )
        oldest.add_metric([name], queue["oldest_pending_age"])
        yield oldest
        pools = GaugeMetricFamily(
            "streamjobs_workers", "Workers of the live pools by state", labels=["queue", "state"]
        )
        pools.add_metric([name, "busy"], workers["busy"])
        pools.add_metric([name, "idle"], workers["idle"])
        yield pools
        healthy = GaugeMetricFamily(
            "streamjobs_workers_healthy",
            "Workers whose pool heartbeats on time with a responsive event loop",
            labels=["queue"],
        )
        healthy.add_metric([name], workers["healthy"])
        yield healthy


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per scrape: a scraper comes every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def queue_metrics_server(client: SyncJobClient, host: str, port: int) -> WSGIServer:
    """A WSGI server answering `/metrics` with the queue's gauges; run it with
    `serve_forever()`, end it with `shutdown()` from another thread, then `server_close()`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(client))
    return make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
