"""streamjobs with every observer on: Prometheus counters and histograms, and OpenTelemetry
spans (SDK, batch processor, an exporter that drops them) in the submitting and the worker
processes, sampling one trace in ten as production tracing is set up
($BENCH_TRACE_RATIO changes it: 1 records every span). Run beside plain streamjobs, it shows
what watching the jobs costs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry

from streamjobs import JobService
from streamjobs.prometheus import WorkerMetrics

from . import _probe
from .streamjobs_runner import StreamjobsPeer, serve


class _Dropped(SpanExporter):
    """Exports nowhere: the cost measured is making and batching the spans."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def observe(svc: JobService) -> JobService:
    """Turn every observer on for `svc` (a tracer provider for the whole process)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        ratio = float(os.environ.get("BENCH_TRACE_RATIO", "0.1"))
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        provider.add_span_processor(BatchSpanProcessor(_Dropped()))
        trace.set_tracer_provider(provider)
    WorkerMetrics(CollectorRegistry()).observe(svc)
    return svc


class ObservedPeer(StreamjobsPeer):
    name = "streamjobs_observed"
    settings = {**StreamjobsPeer.settings, "observers": "prometheus + opentelemetry"}

    async def open(self) -> None:
        self.svc = observe(JobService(redis_url=self.url))
        await self.svc.initialize()

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "benchpeers.streamjobs_observed_runner"]


PEER = ObservedPeer


if __name__ == "__main__":
    asyncio.run(serve(observe(JobService(redis_url=_probe.redis_url()))))
