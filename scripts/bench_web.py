#!/usr/bin/env python3
"""How fast the dashboard's pages render with a million jobs in the queue.

    python scripts/bench_web.py [--jobs 1000000] [--repeat 20]

Starts a throwaway redis-server on a free port, writes `--jobs` pending jobs across the four
priorities and ten handlers straight into the queue's layout (a Lua loop per 50,000, as
enqueue.lua lays them out, with their job.queued events in the trimmed events stream), then
times each page over HTTP against uvicorn and prints the median and the slowest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamjobs.redis_queue import RedisJobQueue  # noqa: E402
from tests._redis import RedisProcess  # noqa: E402
from tests._web import serving  # noqa: E402

FILL = """
local streams = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}
local prefix, events = KEYS[5], KEYS[6]
local first, last = tonumber(ARGV[1]), tonumber(ARGV[2])
local priorities = {'30', '20', '10', '0'}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000
for i = first, last do
  local p = i % 4 + 1
  local id = string.format('bench-%07d', i)
  local entry = redis.call('XADD', streams[p], '*', 'id', id)
  redis.call('HSET', prefix .. id, 'handler', 'h' .. (i % 10), 'status', 'PENDING',
             'entry', entry, 'priority', priorities[p], 'created_at', now, 'args', '[]')
  redis.call('XADD', events, 'MAXLEN', '~', 10000, '*', 'type', 'job.queued', 'job_id', id,
             'at', now)
end
return last
"""


def fill(client: object, queue: RedisJobQueue, jobs: int) -> None:
    keys = queue.keys
    script = client.register_script(FILL)  # type: ignore[attr-defined]
    for start in range(0, jobs, 50_000):
        script(keys=[*keys.streams, keys.job_prefix, keys.events],
               args=[start, min(jobs, start + 50_000) - 1])  # fmt: skip


def timed(url: str, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp)).start()
        try:
            queue = RedisJobQueue(server.url, name="bench")
            with server.client() as client:
                began = time.perf_counter()
                fill(client, queue, opts.jobs)
                took, memory = time.perf_counter() - began, client.info("memory")
                print(f"wrote {opts.jobs:,} pending jobs in {took:.1f} s; "
                      f"{client.dbsize():,} keys, {memory['used_memory_human']}")  # fmt: skip
            pages = [
                "/", "/jobs", "/jobs?status=pending", "/jobs?status=pending&handler=h3",
                "/jobs?status=pending&cursor=", "/jobs/bench-0000042", "/dead-letters",
                "/workers",
            ]  # fmt: skip
            with serving(server.url, "bench") as base:
                # the next page of pending jobs, deep in the streams
                with urllib.request.urlopen(f"{base}/jobs?status=pending", timeout=30) as r:
                    text = r.read().decode()
                cursor = text.split("cursor=", 1)[1].split('"', 1)[0] if "cursor=" in text else ""
                pages[4] += cursor
                print(f"{'page':48} {'median ms':>10} {'max ms':>8}")
                for path in pages:
                    median, worst = timed(base + path, opts.repeat)
                    print(f"{path[:48]:48} {median:10.1f} {worst:8.1f}")
        finally:
            server.kill()


if __name__ == "__main__":
    main()
