"""OpenTelemetry traces across two processes: one submits, another runs the jobs; each
traces with the SDK's in-memory exporter and writes its spans out for the test to read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is not installed")

ROOT = Path(__file__).resolve().parent.parent

Span = dict[str, Any]


def run(mode: str, redis_url: str, queue: str, out: Path, *extra: str) -> list[Span]:
    cmd = [sys.executable, "-m", "tests._traced_app", mode, redis_url, queue, str(out), *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(out.read_text()))


def traced(
    redis_url: str, queue: str, tmp_path: Path, *extra: str
) -> tuple[list[Span], list[Span]]:
    sent = run("submit", redis_url, queue, tmp_path / "sent.json", *extra)
    ran = run("work", redis_url, queue, tmp_path / "ran.json", *extra)
    return sent, [span for span in ran if span["name"] == f"process {queue}"]


def by_job(spans: list[Span]) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for span in spans:
        found.setdefault(span["attributes"]["messaging.message.id"], []).append(span)
    return found


def test_each_attempt_is_a_consumer_span_linked_to_the_submit_that_sent_it(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    sent, ran = traced(redis_url, queue_name, tmp_path)
    producers = {s["attributes"].get("messaging.message.id", "bulk"): s for s in sent}
    assert all(s["name"] == f"send {queue_name}" and s["kind"] == "PRODUCER" for s in sent)
    assert producers["bulk"]["attributes"]["messaging.batch.message_count"] == 3  # one span
    attempts = by_job(ran)
    assert sorted(attempts) == ["bulk-0", "bulk-1", "bulk-2", "doomed", "flaky", "one"]
    for job_id, spans in attempts.items():
        producer = producers["bulk" if job_id.startswith("bulk") else job_id]
        for span in spans:
            assert span["kind"] == "CONSUMER" and span["parent_span_id"] is None
            assert span["links"] == [[producer["trace_id"], producer["span_id"]]]
            attrs = span["attributes"]
            assert attrs["messaging.system"] == "streamjobs"
            assert attrs["messaging.destination.name"] == queue_name
            assert attrs["messaging.consumer.group.name"] == "workers"
    first, second = sorted(attempts["flaky"], key=lambda s: s["attributes"]["streamjobs.attempt"])
    assert first["events"] == ["retry"] and first["attributes"]["error.type"] == "ValueError"
    assert first["status"] == "ERROR" and second["status"] == "UNSET"
    assert second["attributes"]["streamjobs.attempt"] == 2
    [doomed] = attempts["doomed"]
    assert (
        doomed["events"] == ["dead_letter"] and doomed["attributes"]["error.type"] == "RuntimeError"
    )


def test_trace_parent_child_nests_each_attempt_under_its_submit(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    sent, ran = traced(redis_url, queue_name, tmp_path, "--child")
    producers = {s["attributes"].get("messaging.message.id", "bulk"): s for s in sent}
    for job_id, spans in by_job(ran).items():
        producer = producers["bulk" if job_id.startswith("bulk") else job_id]
        for span in spans:
            assert span["trace_id"] == producer["trace_id"]
            assert span["parent_span_id"] == producer["span_id"] and span["links"] == []


def test_a_job_submitted_in_an_unsampled_trace_makes_no_attempt_spans(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    """The submitting process samples nothing; the worker samples everything it is asked
    to: its attempts follow their submits' decision, so none makes a span."""
    sent = run("submit", redis_url, queue_name, tmp_path / "sent.json", "--unsampled")
    ran = run("work", redis_url, queue_name, tmp_path / "ran.json")
    assert sent == []
    assert [s for s in ran if s["name"] == f"process {queue_name}"] == []
