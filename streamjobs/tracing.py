"""OpenTelemetry traces of jobs (`pip install 'streamjobs[otel]'`: opentelemetry-api only).

With the API installed, every service traces as soon as the app sets a tracer provider (no
switch): a PRODUCER span `send {queue}` per submit (one per bulk call, with the count), whose
W3C trace context travels in the job's record, and a CONSUMER span `process {queue}` per
attempt, linked to the producer's context (or its child, with `trace_parent="child"`),
carrying the messaging semantic conventions' attributes. An attempt follows its submit's
sampling decision: a job submitted in an unsampled trace makes no attempt spans. Retries and
dead-lettering are events on the attempt's span; a failed attempt sets `error.type` and an
error status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._codec import NewJob
from ._keys import GROUP
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .redis_queue import Delivery

#: Record fields that carry the producer's trace context (W3C Trace Context).
CONTEXT_FIELDS = ("traceparent", "tracestate")
SYSTEM = "streamjobs"
_PROPAGATOR = TraceContextTextMapPropagator()


def _sent(record: dict[str, str]) -> SpanContext:
    """The submit's span context from a job record's `traceparent` (W3C version 00, read
    here directly: a worker does this per attempt, and the propagator's regex costs more
    than the rest of it); anything else goes through the propagator."""
    header = record.get("traceparent")
    if header is None:
        return INVALID_SPAN_CONTEXT
    version, trace_id, span_id, flags = [*header.split("-"), "", "", "", ""][:4]
    if version != "00" or len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        carrier = {key: record[key] for key in CONTEXT_FIELDS if key in record}
        return trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    try:
        state = TraceState.from_header([record["tracestate"]]) if "tracestate" in record else None
        return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                           trace_flags=TraceFlags(int(flags, 16)), trace_state=state)  # fmt: skip
    except ValueError:
        return INVALID_SPAN_CONTEXT


def _error_type(error: str | None) -> str:
    """The exception type an error text starts with ("ValueError: boom" -> "ValueError")."""
    head = (error or "").split(":", 1)[0].strip()
    return head if head and " " not in head else "_OTHER"


class _Attempt:
    """The CONSUMER span of one attempt."""

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def running(self) -> _Attempt:
        """The span is current around the handler (attached directly: `use_span` is a
        generator-based context manager, slower than the rest of an attempt's tracing)."""
        return self

    def __enter__(self) -> None:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._token)

    def ended(self, outcome: str, error: str | None, detail: str | None) -> None:
        span = self._span
        span.set_attribute("streamjobs.outcome", outcome)
        if outcome == "retried":
            span.add_event("retry", {"streamjobs.retry_delay_s": float(detail or 0)})
        elif outcome == "dead_letter":
            span.add_event("dead_letter", {"streamjobs.reason": detail or ""})
        if outcome not in ("completed", "released"):
            span.set_attribute("error.type", _error_type(error))
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


class _Unsampled:
    """An attempt whose submit's trace was not sampled: it makes no span either, so a sampled
    trace holds both sides of a job and an unsampled one costs a worker next to nothing."""

    def running(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def ended(self, outcome: str, error: str | None, detail: str | None) -> None:
        """Nothing to record."""


_UNSAMPLED = _Unsampled()


class Tracing:
    """The tracing observer; `trace_parent` is "link" (the attempt's span starts a trace of
    its own, linked to the submit's: the default of the messaging conventions, as a job may
    run long after, and many times) or "child" (the attempt nests under the submit)."""

    def __init__(self, trace_parent: str = "link") -> None:
        if trace_parent not in ("link", "child"):
            raise ConfigurationError(
                f"trace_parent must be 'link' or 'child', not {trace_parent!r}"
            )
        self.trace_parent = trace_parent
        self._provider: trace.TracerProvider | None = None
        self._cached: trace.Tracer = trace.NoOpTracer()

    @property
    def active(self) -> bool:
        """True once the app has set a tracer provider."""
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

    def _tracer(self) -> trace.Tracer:
        """The provider's tracer, made once per provider (making one costs more than a span)."""
        provider = trace.get_tracer_provider()
        if provider is not self._provider:
            self._provider, self._cached = provider, provider.get_tracer("streamjobs")
        return self._cached

    @contextlib.contextmanager
    def submitting(self, queue: str, jobs: Sequence[NewJob]) -> Iterator[Sequence[NewJob]]:
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM, "messaging.destination.name": queue,
            "messaging.operation.type": "send",
        }  # fmt: skip
        if len(jobs) == 1:
            attributes["messaging.message.id"] = jobs[0].id
            attributes["streamjobs.handler"] = jobs[0].handler
        else:
            attributes["messaging.batch.message_count"] = len(jobs)
        name = f"send {queue}"
        with self._tracer().start_as_current_span(name, kind=SpanKind.PRODUCER,
                                                  attributes=attributes):  # fmt: skip
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            extra = tuple(part for key in CONTEXT_FIELDS if key in carrier
                          for part in (key, carrier[key]))  # fmt: skip
            yield [job._replace(fields=(*job.fields, *extra)) for job in jobs] if extra else jobs

    def attempt(self, queue: str, d: Delivery) -> _Attempt | _Unsampled:
        sent = _sent(d.record)
        if sent.is_valid and not sent.trace_flags.sampled:
            return _UNSAMPLED  # its submit was not sampled: neither are its attempts
        child = self.trace_parent == "child" and sent.is_valid
        producer = trace.set_span_in_context(NonRecordingSpan(sent)) if child else None
        links = [Link(sent)] if sent.is_valid and not child else []
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM, "messaging.destination.name": queue,
            "messaging.operation.type": "process", "messaging.message.id": d.job_id,
            "messaging.consumer.group.name": GROUP,
            "streamjobs.handler": d.job.handler if d.job else d.record.get("handler", ""),
            "streamjobs.attempt": int(d.attempt),
        }  # fmt: skip
        span = self._tracer().start_span(
            f"process {queue}", context=producer or otel_context.Context(),
            kind=SpanKind.CONSUMER, links=links, attributes=attributes,
        )  # fmt: skip
        return _Attempt(span)

    def reclaimed(self, queue: str, count: int) -> None:
        """Nothing to trace: each reclaimed job's next attempt has its own span."""
