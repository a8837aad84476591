"""`streamjobs metrics`: Prometheus scrapes the queue's gauges while workers run its jobs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")
from prometheus_client.parser import text_string_to_metric_families

from streamjobs.sync import SyncJobClient

ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def exporter(redis_url: str, queue_name: str) -> Iterator[str]:
    """`streamjobs metrics` on a free port, as an operator runs it; yields its /metrics URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "streamjobs", "metrics", "--redis-url", redis_url,
           "--queue", queue_name, "--port", str(port)]  # fmt: skip
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # printed once it is serving
            assert "/metrics" in line, line + proc.stdout.read()
            yield f"http://127.0.0.1:{port}/metrics"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0  # SIGTERM ends it cleanly
        finally:
            _stop(proc)


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def jobs(samples: Samples, queue: str, priority: str, state: str) -> float:
    key = (("priority", priority), ("queue", queue), ("state", state))
    return samples[("streamjobs_queue_jobs", key)]


def test_a_scrape_reports_depth_per_priority_and_state_with_no_job_ids_in_labels(
    exporter: str, redis_url: str, queue_name: str
) -> None:
    with SyncJobClient(redis_url, name=queue_name) as client:
        ids = [client.submit_job("process_media", args=(n,), priority="critical") for n in range(3)]
        ids += [client.submit_job("process_media", args=(n,), priority="low") for n in range(2)]
        ids.append(client.submit_job("process_media", args=(9,), delay=3600))
    time.sleep(0.05)  # the oldest job has waited a little
    text, samples = scrape(exporter)
    assert samples[("streamjobs_queue_up", (("queue", queue_name),))] == 1
    assert jobs(samples, queue_name, "critical", "pending") == 3
    assert jobs(samples, queue_name, "low", "pending") == 2
    assert jobs(samples, queue_name, "normal", "pending") == 0
    assert jobs(samples, queue_name, "all", "scheduled") == 1
    assert jobs(samples, queue_name, "all", "dead_letter") == 0
    age = samples[("streamjobs_queue_oldest_age_seconds", (("queue", queue_name),))]
    assert 0.04 <= age < 60
    assert not any(job_id in text for job_id in ids)


def test_scrapes_follow_the_jobs_as_a_worker_process_runs_them(
    exporter: str, redis_url: str, queue_name: str
) -> None:
    with SyncJobClient(redis_url, name=queue_name) as client:
        for n in range(4):
            client.submit_job("process_media", args=(n,), kwargs={"seconds": 0.4}, priority="high")
    cmd = [sys.executable, "-m", "streamjobs", "worker", "examples.app:service",
           "--concurrency", "2", "--log-level", "warning", "--queue", queue_name]  # fmt: skip
    worker = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "REDIS_URL": redis_url}, text=True)
    try:
        busy_seen = running_seen = 0.0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, samples = scrape(exporter)
            workers = (("queue", queue_name), ("state", "busy"))
            busy_seen = max(busy_seen, samples[("streamjobs_workers", workers)])
            running_seen = max(running_seen, jobs(samples, queue_name, "high", "running"))
            pending = jobs(samples, queue_name, "high", "pending")
            idle = samples[("streamjobs_workers", (("queue", queue_name), ("state", "idle")))]
            done = pending == 0 and jobs(samples, queue_name, "high", "running") == 0
            if busy_seen and done and idle == 2:  # the pool's next heartbeat shows them idle
                break
            time.sleep(0.1)
        assert busy_seen == 2 and running_seen == 2  # two at once, as --concurrency says
        assert pending == 0 and idle == 2
        assert samples[("streamjobs_workers_healthy", (("queue", queue_name),))] == 2
    finally:
        _stop(worker)


def test_metrics_with_redis_unreachable_prints_one_line_and_exits_1() -> None:
    cmd = [sys.executable, "-m", "streamjobs", "metrics", "--redis-url",
           f"redis://127.0.0.1:{_free_port()}/0", "--port", str(_free_port())]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "cannot use Redis" in done.stderr


def _sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_worker_metrics_port_counts_the_attempts_it_ran_with_durations_and_waits(
    redis_url: str, queue_name: str
) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "streamjobs", "worker", "examples.app:service",
           "--concurrency", "2", "--log-level", "warning", "--queue", queue_name,
           "--metrics-port", str(port)]  # fmt: skip
    env = {**os.environ, "REDIS_URL": redis_url}
    with SyncJobClient(redis_url, name=queue_name) as client:
        ids = [client.submit_job("process_media", args=(n,), kwargs={"seconds": 0.02})
               for n in range(3)]  # fmt: skip
        ids.append(client.submit_job("process_media", kwargs={"quality": "8k"}, priority="high"))
    worker = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    q, h = queue_name, "process_media"
    try:
        deadline, samples, text = time.monotonic() + 30, {}, ""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # not serving yet
                text, samples = scrape(url)
            done = _sample(samples, "streamjobs_jobs_finished_total", queue=q, handler=h,
                           outcome="completed")  # fmt: skip
            if done == 3 and _sample(samples, "streamjobs_jobs_finished_total", queue=q,
                                     handler=h, outcome="failed") == 1:  # fmt: skip
                break
            time.sleep(0.1)
        assert done == 3
        durations = _sample(samples, "streamjobs_job_duration_seconds_count", queue=q, handler=h,
                            outcome="completed")  # fmt: skip
        took = _sample(samples, "streamjobs_job_duration_seconds_sum", queue=q, handler=h,
                       outcome="completed")  # fmt: skip
        assert durations == 3 and took >= 3 * 0.06  # three steps of 0.02 s each
        waits = _sample(samples, "streamjobs_job_wait_seconds_count", queue=q, handler=h,
                        priority="normal")  # fmt: skip
        assert waits == 3
        assert _sample(samples, "streamjobs_job_wait_seconds_count", queue=q, handler=h,
                       priority="high") == 1  # fmt: skip
        assert not any(job_id in text for job_id in ids)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        _stop(worker)


@pytest.mark.anyio
async def test_submits_are_counted_by_handler_and_priority_and_handlers_past_the_cap_fold(
    svc: Any,
) -> None:
    from prometheus_client import CollectorRegistry

    from streamjobs.prometheus import WorkerMetrics

    registry = CollectorRegistry()
    WorkerMetrics(registry, max_handlers=2).observe(svc)
    await svc.submit_job("a", priority="high")
    await svc.submit_job("b")
    await svc.submit_many([{"handler": "c"}, {"handler": "d"}])
    await svc.submit_many([{"handler": "a", "priority": "high"}])
    name, q = "streamjobs_jobs_enqueued_total", svc.queue.keys.name

    def count(handler: str, priority: str) -> float | None:
        labels = {"queue": q, "handler": handler, "priority": priority}
        return registry.get_sample_value(name, labels)

    assert count("a", "high") == 2 and count("b", "normal") == 1
    assert count("other", "normal") == 2  # c and d: past the two handler names kept
    assert count("c", "normal") is None
