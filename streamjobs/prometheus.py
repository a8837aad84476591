"""Prometheus metrics (`pip install 'streamjobs[prometheus]'`): a queue's gauges, and a
process's counters and histograms of the jobs it submits and runs.

`QueueCollector` reads one metrics snapshot per scrape (one script call, so every number in a
scrape is from the same instant) and exposes it as gauges; `queue_metrics_server` serves them
at `/metrics`, as `streamjobs metrics --port 9808` does. Labels carry no job ids, arguments or
host names: a scrape's size does not grow with the work the queue does.

`WorkerMetrics` counts what one process does (`streamjobs worker --metrics-port P` serves
them): jobs submitted, attempts by outcome, reclaims, and how long jobs ran and waited.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter as Counter_
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._codec import NewJob
from .errors import ConfigurationError, StreamJobsError
from .sync import SyncJobClient

if TYPE_CHECKING:
    from .redis_queue import Delivery
    from .service import JobService

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_wsgi_app
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
_WHOLE = {
    "scheduled": "scheduled", "waiting": "waiting", "retrying": "retrying",
    "dead_letter": "dead_letter",
}  # fmt: skip


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


def quiet_server(host: str, port: int, app: Any) -> WSGIServer:
    """A WSGI server for `app` that logs no line per request."""
    return make_server(host, port, app, handler_class=_QuietHandler)


def queue_metrics_server(client: SyncJobClient, host: str, port: int) -> WSGIServer:
    """A WSGI server answering `/metrics` with the queue's gauges; run it with
    `serve_forever()`, end it with `shutdown()` from another thread, then `server_close()`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(client))
    return quiet_server(host, port, make_wsgi_app(registry))


#: Histogram buckets from 5 ms to 1 h, for how long jobs run and wait.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
           1800, 3600)  # fmt: skip
#: Handler names kept as label values; past this many, new ones count as "other".
MAX_HANDLERS = 100


class _Attempt:
    def __init__(self, metrics: WorkerMetrics, queue: str, handler: str) -> None:
        self._metrics, self._queue, self._handler = metrics, queue, handler
        self._began = time.perf_counter()

    def running(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def ended(self, outcome: str, error: str | None, detail: str | None) -> None:
        if outcome == "released":  # it runs again: its next attempt is the one counted
            return
        finished, duration = self._metrics.finished(self._queue, self._handler, outcome)
        finished.inc()
        duration.observe(time.perf_counter() - self._began)


class WorkerMetrics:
    """Counters and histograms of the jobs this process submits and runs, in `registry`
    (prometheus_client's default one unless given). Handler names past `max_handlers`
    distinct ones fold into "other", so that a label's values stay bounded."""

    active = True

    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_handlers: int = MAX_HANDLERS
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.registry = registry
        self._handlers: set[str] = set()
        self._children: dict[tuple[str, str, str], Any] = {}
        self._waits: dict[tuple[str, str, str], Any] = {}
        self._outcomes: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._max_handlers = max_handlers
        self.enqueued_total = Counter(
            "streamjobs_jobs_enqueued", "Jobs submitted by this process",
            ["queue", "handler", "priority"], registry=registry,
        )  # fmt: skip
        self.finished_total = Counter(
            "streamjobs_jobs_finished", "Attempts this process ran, by how they ended",
            ["queue", "handler", "outcome"], registry=registry,
        )  # fmt: skip
        self.reclaimed_total = Counter(
            "streamjobs_jobs_reclaimed", "Jobs this process took over from workers whose "
            "lease lapsed", ["queue"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "streamjobs_job_duration_seconds", "How long attempts ran, by how they ended",
            ["queue", "handler", "outcome"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip
        self.wait = Histogram(
            "streamjobs_job_wait_seconds", "How long jobs waited to start, from when they "
            "became runnable (submitted, or due)", ["queue", "handler", "priority"],
            buckets=BUCKETS, registry=registry,
        )  # fmt: skip

    def observe(self, svc: JobService) -> WorkerMetrics:
        """Count the jobs `svc` submits and its workers run; returns self."""
        svc.queue.observers.add(self)
        return self

    def _handler(self, name: str) -> str:
        if name in self._handlers:
            return name
        if len(self._handlers) < self._max_handlers:
            self._handlers.add(name)
            return name
        return "other"

    @contextlib.contextmanager
    def submitting(self, queue: str, jobs: Sequence[NewJob]) -> Iterator[Sequence[NewJob]]:
        yield jobs  # counted once written: a submit that raised queued nothing (or some)
        counts = Counter_((job.handler, job.priority) for job in jobs)  # one inc per label set
        for (handler, priority), n in counts.items():
            key = (queue, self._handler(handler), priority.name.lower())
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.enqueued_total.labels(*key)
            child.inc(n)

    def attempt(self, queue: str, d: Delivery) -> _Attempt:
        handler = self._handler(d.job.handler if d.job else d.record.get("handler", ""))
        started = int(d.record.get("started_at") or 0)
        runnable = int(d.entry.split("-", 1)[0] or 0)  # the entry's id: when it was queued
        if started and runnable and d.job is not None:
            key = (queue, handler, d.job.priority.name.lower())
            child = self._waits.get(key)
            if child is None:
                child = self._waits[key] = self.wait.labels(*key)
            child.observe(max(0.0, (started - runnable) / 1000))
        return _Attempt(self, queue, handler)

    def finished(self, queue: str, handler: str, outcome: str) -> tuple[Any, Any]:
        """The counter and histogram children of one label set (looked up once: `labels()`
        takes a lock and builds a key every call, which a busy worker would pay per job)."""
        key = (queue, handler, outcome)
        found = self._outcomes.get(key)
        if found is None:
            found = self._outcomes[key] = (
                self.finished_total.labels(*key), self.duration.labels(*key)
            )
        return found

    def reclaimed(self, queue: str, count: int) -> None:
        self.reclaimed_total.labels(queue).inc(count)
