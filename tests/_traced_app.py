"""A process that traces with the OpenTelemetry SDK's in-memory exporter, then writes the spans
it made to a JSON file: `submit` submits the test's jobs, `work` runs them (tests/test_tracing.py).

    python -m tests._traced_app submit|work URL QUEUE OUT.json [--child] [--unsampled]
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from streamjobs import JobDefinition, JobService


def _span(span: ReadableSpan) -> dict[str, Any]:
    ctx, parent = span.get_span_context(), span.parent
    return {
        "name": span.name, "kind": span.kind.name, "trace_id": ctx.trace_id,
        "span_id": ctx.span_id, "parent_span_id": parent.span_id if parent else None,
        "links": [(link.context.trace_id, link.context.span_id) for link in span.links],
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events], "status": span.status.status_code.name,
    }  # fmt: skip


async def submit(svc: JobService) -> None:
    await svc.submit_job("ok", job_id="one")
    await svc.submit_job("flaky", job_id="flaky", retry_delay=0.05)
    await svc.submit_job("doomed", job_id="doomed", max_retries=0)
    await svc.submit_many([{"handler": "ok", "job_id": f"bulk-{n}"} for n in range(3)])


async def work(svc: JobService) -> None:
    async def ok(job: JobDefinition, progress: Any) -> int:
        return 1

    async def flaky(job: JobDefinition, progress: Any) -> int:
        if job.attempts <= 1:
            raise ValueError("first attempt fails")
        return 2

    async def doomed(job: JobDefinition, progress: Any) -> None:
        raise RuntimeError("always fails")

    for name, fn in (("ok", ok), ("flaky", flaky), ("doomed", doomed)):
        svc.register_handler(name, fn)
    await svc.start_workers(2)
    with anyio.fail_after(30):
        while True:
            metrics = (await svc.get_metrics())["queue"]
            if metrics["completed"] == 5 and metrics["dead_lettered"] == 1:
                break
            await anyio.sleep(0.05)
    await svc.stop_workers()


async def main(mode: str, url: str, queue: str, child: bool) -> None:
    async with JobService(url, name=queue, trace_parent="child" if child else None) as svc:
        await (submit if mode == "submit" else work)(svc)


if __name__ == "__main__":
    mode, url, queue, out = sys.argv[1:5]
    exporter = InMemorySpanExporter()
    sampler = ALWAYS_OFF if "--unsampled" in sys.argv else ALWAYS_ON
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    anyio.run(main, mode, url, queue, "--child" in sys.argv)
    provider.shutdown()
    with open(out, "w") as f:
        json.dump([_span(s) for s in exporter.get_finished_spans()], f)
