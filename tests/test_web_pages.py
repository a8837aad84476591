"""The dashboard's pages and actions over plain HTTP (no browser): paging by cursor, lookup
by id, the chart's numbers, basic auth and who-did-what in the events stream."""

from __future__ import annotations

import base64
import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed")

from streamjobs import JobStatus  # noqa: E402
from streamjobs._keys import partition_of  # noqa: E402
from streamjobs.errors import ConfigurationError  # noqa: E402
from streamjobs.sync import SyncJobClient  # noqa: E402
from streamjobs.web import create_app  # noqa: E402
from streamjobs.web._chart import chart  # noqa: E402
from streamjobs.web._paging import join_cursor, split_cursor, valid_cursor  # noqa: E402
from tests._redis import free_port  # noqa: E402
from tests._web import RELEASED, get, serving, workers  # noqa: E402


@pytest.fixture
def parts(request: pytest.FixtureRequest) -> int:
    """The test queue's partition count: 1 unless the test asks for more (PARTS)."""
    return int(getattr(request, "param", 1))


#: Run a test on one partition and on three (the dashboard adopts the recorded count).
PARTS = pytest.mark.parametrize("parts", [1, 3], indirect=True)


@pytest.fixture
def client(redis_url: str, queue_name: str, parts: int) -> Iterator[SyncJobClient]:
    with SyncJobClient(redis_url, name=queue_name, partitions=parts) as c:
        c.get_job_status("-")  # records the partition count before a dashboard or pool adopts it
        yield c


def follow(base: str, url: str, pages: int = 10) -> list[str]:
    """The ids on a list and on every page its 'next' links lead to (at most `pages`)."""
    seen: list[str] = []
    for _ in range(pages):
        status, body, _ = get(url)
        assert status == 200, body
        seen += ids_in(body) or dead_ids_in(body)
        found = re.search(r'id="next" href="([^"]+)"', body)
        if not found:
            return seen
        url = base + found.group(1).replace("&amp;", "&")
    raise AssertionError(f"more than {pages} pages")


def dead_ids_in(body: str) -> list[str]:
    return re.findall(r'<tr class="dead-row" data-id="([^"]+)">', body)


def ids_in(body: str) -> list[str]:
    return re.findall(r'<td class="id"><a href="/jobs/([^"]+)">', body)


@PARTS
def test_pending_jobs_page_through_every_priority_newest_first_without_repeats(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    priorities = ["critical", "high", "normal", "low"]
    # one bulk submit: jobs of several priorities share entry ids (one millisecond)
    bulk = client.submit_many([{"handler": "c", "priority": p} for p in priorities * 10])
    time.sleep(0.002)  # entries of other streams order by millisecond only: a new one
    submitted = []
    for i in range(120):
        submitted.append(client.submit_job("a" if i % 3 else "b", priority=priorities[i % 4]))
        time.sleep(0.002)  # a millisecond of its own each: their order is certain
    seen: list[str] = []
    with serving(redis_url, queue_name) as base:
        url = f"{base}/jobs?status=pending"
        for _ in range(10):
            status, body, _ = get(url)
            assert status == 200
            seen += ids_in(body)
            found = re.search(r'id="next" href="([^"]+)"', body)
            if not found:
                break
            url = base + found.group(1).replace("&amp;", "&")
        assert seen[:120] == submitted[::-1]
        assert sorted(seen[120:]) == sorted(bulk) and len(seen) == 160
        _, body, _ = get(f"{base}/jobs?status=pending&handler=b")
        assert ids_in(body) == [j for i, j in enumerate(submitted) if i % 3 == 0][::-1][:50]


@PARTS
def test_lookup_by_exact_id_opens_the_job_and_says_when_there_is_none(
    client: SyncJobClient, redis_url: str, queue_name: str, parts: int
) -> None:
    names = (f"tenant/{queue_name[-3:]}+a=b@c:d{i}" for i in range(100))
    # in the last partition: with many, not the first, whose keys a one-partition read uses
    job_id = next(j for j in names if partition_of(j, parts) == parts - 1)
    job_id = client.submit_job("a", job_id=job_id)
    with serving(redis_url, queue_name) as base:
        status, _, headers = get(f"{base}/jobs?id={urllib.parse.quote(job_id)}")
        assert status == 303 and headers["location"] == f"/jobs/{urllib.parse.quote(job_id)}"
        assert get(base + headers["location"])[0] == 200
        status, body, _ = get(f"{base}/jobs?id={urllib.parse.quote('nope-' + job_id)}")
        assert status == 200 and f"No job with id <code>nope-{job_id}</code>" in body
        status, body, _ = get(f"{base}/jobs/{job_id}")
        assert status == 200 and job_id in body and "PENDING" in body
        assert f'action="/jobs/{urllib.parse.quote(job_id)}/cancel"' in body


@PARTS
def test_basic_auth_guards_every_path_and_names_the_user_in_the_events(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    waiting = client.submit_job("a", delay=3600)
    good = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"ops:wrong").decode()
    with serving(redis_url, queue_name, basic_auth="ops:s3cret") as base:
        for path in ("/", "/jobs", "/static/htmx.min.js", f"/jobs/{waiting}/cancel"):
            status, _, headers = get(base + path, {"Authorization": bad})
            assert status == 401 and headers["www-authenticate"].startswith("Basic")
        status, _, headers = get(f"{base}/jobs/{waiting}", {"Authorization": good})
        assert status == 200
        token = headers["set-cookie"].split("streamjobs_csrf=", 1)[1].split(";", 1)[0]
        request = urllib.request.Request(
            f"{base}/jobs/{waiting}/cancel", data=f"csrf={token}".encode(), method="POST",
            headers={"Authorization": good, "Cookie": f"streamjobs_csrf={token}",
                     "Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200  # redirected back to the job page
        assert client.get_job_status(waiting) == JobStatus.CANCELLED
        _, body, _ = get(f"{base}/jobs/{waiting}", {"Authorization": good})
        assert "dashboard.action" in body and "user=ops action=cancel" in body


def test_htmx_is_served_from_the_package_with_its_licence(redis_url: str, queue_name: str) -> None:
    with serving(redis_url, queue_name) as base:
        status, body, _ = get(f"{base}/static/htmx.min.js")
        assert status == 200 and "htmx" in body[:200]
        status, body, _ = get(f"{base}/static/htmx.LICENSE")
        assert status == 200 and "Zero-Clause BSD" in body
        _, page, _ = get(f"{base}/")
        assert '<script src="/static/htmx.min.js">' in page and "every 2s" in page


def test_malformed_basic_auth_is_refused_at_once() -> None:
    with pytest.raises(ConfigurationError, match="USER:PASS"):
        create_app("redis://127.0.0.1:1/0", basic_auth="no-colon")
    with pytest.raises(ConfigurationError, match="non-empty"):
        create_app("redis://127.0.0.1:1/0", basic_auth=":pass")


def test_chart_counts_per_minute_from_samples_and_spreads_unwatched_gaps() -> None:
    now = 1000
    series = {"950": "0 0", "998": "10 2", "999": "40 2", "1000": "41 3"}
    bars = {m: (c, f) for m, c, f in chart(series, now)}
    assert len(bars) == 60 and bars[1000] == (1, 1) and bars[999] == (30, 0)
    assert bars[960] == (0, 0) and bars[998] == (0, 0)  # 10 over 48 unwatched minutes
    assert chart({}, now)[-1] == (1000, None, None)
    # before the first sample, the counts read from the events stream, where it reaches
    early = {m: (c, f) for m, c, f in chart(series, now, {m: (1, 0) for m in range(900, 1001)})}
    assert early[941] == (1, 0) and early[998] == (0, 0)  # samples win where there are some
    late = {m: (c, f) for m, c, f in chart({"1000": "3 3"}, now, {999: (2, 1)})}
    assert late[999] == (2, 1) and late[1000] == (None, None) and late[998] == (None, None)


def test_mounted_under_a_host_app_links_and_polls_under_its_prefix(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job_id = client.submit_job("a")
    dashboard = create_app(redis_url, name=queue_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dashboard.aclose()  # a Mount runs no lifespan of the app it mounts

    host = Starlette(routes=[Mount("/ops", app=dashboard)], lifespan=lifespan)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        status, body, _ = get(f"http://127.0.0.1:{port}/ops/jobs?status=pending")
        assert status == 200 and f'href="/ops/jobs/{job_id}"' in body
        assert '<script src="/ops/static/htmx.min.js">' in body
        status, body, _ = get(f"http://127.0.0.1:{port}/ops/?partial=1")
        assert status == 200 and 'hx-get="/ops/?partial=1"' in body and "<nav>" not in body
        assert get(f"http://127.0.0.1:{port}/ops/static/htmx.min.js")[0] == 200
    finally:
        server.should_exit = True
        thread.join(10)


def test_streamjobs_web_serves_the_dashboard_on_loopback_and_stops_on_sigint(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    job_id = client.submit_job("a")
    port = free_port()
    argv = [sys.executable, "-m", "streamjobs", "web", "--redis-url", redis_url,
            "--queue", queue_name, "--port", str(port), "--read-only"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, answer = time.monotonic() + 15, None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                answer = get(f"http://127.0.0.1:{port}/jobs/{job_id}")
            time.sleep(0.1)
        assert answer is not None, "streamjobs web did not answer within 15 s"
        assert answer[0] == 200 and "read-only" in answer[1] and job_id in answer[1]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode in (0, 130), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--basic-auth", "nocolon"], "--basic-auth: basic auth must be USER:PASS"),
        (["--port", "0"], "--port must be between 1 and 65535"),
        (["--partitions", "0"], "--partitions must be at least 1, not 0"),
        (["--redis-url", "redis://127.0.0.1:1/0"], "cannot use Redis at redis://127.0.0.1:1/0"),
    ],
)
def test_streamjobs_web_bad_options_fail_in_one_line(args: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "streamjobs", "web", "--redis-url", "redis://127.0.0.1:1/0"]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


@PARTS
def test_running_jobs_are_listed_longest_running_first_across_priorities(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    order = []
    for priority in ("low", "critical", "normal", "high", "low"):
        order.append(client.submit_job("gated", priority=priority))
        time.sleep(0.002)
    with serving(redis_url, queue_name) as base, workers(redis_url, queue_name, count=5):
        try:
            deadline, listed = time.monotonic() + 10, []
            while len(listed) < 5 and time.monotonic() < deadline:
                listed = ids_in(get(f"{base}/jobs?status=running")[1])
                time.sleep(0.05)
            assert listed == order  # submitted in this order, so entered their streams so
            assert ids_in(get(f"{base}/jobs?status=running&handler=quick")[1]) == []
        finally:
            RELEASED.update(order)


@PARTS
def test_overview_splits_scheduled_retrying_and_dead_letters_by_priority(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    client.submit_job("quick", delay=3600, priority="high")
    client.submit_job("quick", delay=3600, priority="high")
    client.submit_job("quick", delay=3600, priority="low")
    retrying = client.submit_job("healable", priority="low", max_retries=1, retry_delay=3600)
    dead = client.submit_job("healable", priority="critical", max_retries=0)
    with serving(redis_url, queue_name) as base:
        with workers(redis_url, queue_name):
            deadline = time.monotonic() + 10
            while (client.get_job_status(retrying), client.get_job_status(dead)) != (
                JobStatus.RETRYING, JobStatus.DEAD_LETTER,
            ):  # fmt: skip
                assert time.monotonic() < deadline, "the jobs did not fail within 10 s"
                time.sleep(0.05)
        body = get(f"{base}/?partial=1")[1]

    def row(name: str) -> list[str]:
        cells = re.search(rf'<tr class="priority-{name}">(.*?)</tr>', body, re.S)
        assert cells, body
        return re.findall(r'<td class="num">([^<]*)</td>', cells.group(1))

    # pending, running, scheduled, retrying, dead letters
    assert row("critical") == ["0", "0", "0", "0", "1"]
    assert row("high") == ["0", "0", "2", "0", "0"]
    assert row("normal") == ["0", "0", "0", "0", "0"]
    assert row("low") == ["0", "0", "1", "1", "0"]


@PARTS
def test_finished_jobs_are_found_behind_a_page_of_other_events(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    done: list[str] = []
    with workers(redis_url, queue_name):
        for _ in range(3):  # one after another: partitions are served in no set order
            done.append(client.submit_job("quick"))
            deadline = time.monotonic() + 10
            while client.get_job_status(done[-1]) != JobStatus.COMPLETED:
                assert time.monotonic() < deadline, "the job did not complete within 10 s"
                time.sleep(0.01)
    client.submit_many([{"handler": "quick", "delay": 3600} for _ in range(250)])
    with serving(redis_url, queue_name) as base:
        body = get(f"{base}/jobs?status=completed")[1]
        assert ids_in(body) == done[::-1]
        assert 'id="next"' not in body


@PARTS
def test_job_timeline_reaches_back_past_a_thousand_newer_events(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    job_id = client.submit_job("quick", delay=3600)
    client.submit_many([{"handler": "quick", "delay": 3600} for _ in range(1500)])
    with serving(redis_url, queue_name) as base:
        body = get(f"{base}/jobs/{job_id}")[1]
    timeline = body.split('id="timeline"', 1)[1]
    assert timeline.count("<td>job.scheduled</td>") == 1


@PARTS
def test_chart_shows_this_minutes_completions_from_the_sampled_counters(
    client: SyncJobClient, redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    seconds, _ = raw.time()
    if seconds % 60 > 50:  # keep the whole test inside one server minute
        time.sleep(61 - seconds % 60)
        seconds, _ = raw.time()
    minute = seconds // 60
    series = client.queue.keys.dashboard_minutes
    old = {str(minute - 2): "0 0", str(minute - 1): "0 0", str(minute - 90): "0 0"}
    raw.hset(series, mapping=old)
    done = [client.submit_job("quick") for _ in range(5)]
    failed = client.submit_job("healable", max_retries=0)
    with workers(redis_url, queue_name):
        deadline = time.monotonic() + 10
        while client.get_job_status(failed) != JobStatus.DEAD_LETTER or any(
            client.get_job_status(j) != JobStatus.COMPLETED for j in done
        ):
            assert time.monotonic() < deadline, "the jobs did not finish within 10 s"
            time.sleep(0.05)
    with serving(redis_url, queue_name) as base:
        body = get(f"{base}/")[1]
    assert "5 completed, 1 failed</title>" in body
    assert "0 completed, 0 failed</title>" in body  # the minute before, sampled at zero
    assert "no sample" not in body  # before the first sample, the events stream's counts
    kept = sorted(int(m) for m in raw.hkeys(series))
    assert kept == [minute - 2, minute - 1, minute]  # the 90-minute-old sample was dropped


@PARTS
def test_chart_counts_from_the_events_stream_before_any_dashboard_sampled(
    client: SyncJobClient, redis_url: str, queue_name: str, raw: redis.Redis
) -> None:
    seconds, _ = raw.time()
    if seconds % 60 > 50:  # keep the whole test inside one server minute
        time.sleep(61 - seconds % 60)
    done = [client.submit_job("quick") for _ in range(4)]
    failed = client.submit_job("healable", max_retries=0)
    with workers(redis_url, queue_name):
        deadline = time.monotonic() + 10
        while client.get_job_status(failed) != JobStatus.DEAD_LETTER or any(
            client.get_job_status(j) != JobStatus.COMPLETED for j in done
        ):
            assert time.monotonic() < deadline, "the jobs did not finish within 10 s"
            time.sleep(0.05)
    with serving(redis_url, queue_name) as base:
        body = get(f"{base}/")[1]
    assert body.count("4 completed, 1 failed</title>") == 1
    assert body.count("0 completed, 0 failed</title>") == 59  # the events reach back an hour


@pytest.mark.parametrize(
    "query",
    ["status=nope", "status=pending&cursor=abc", "status=pending&cursor=1-0@9",
     "status=scheduled&cursor=-1", "status=completed&cursor=(1-0"],
)  # fmt: skip
def test_a_bad_status_or_cursor_is_a_400_naming_it(
    redis_url: str, queue_name: str, query: str
) -> None:
    with serving(redis_url, queue_name) as base:
        status, body, _ = get(f"{base}/jobs?{query}")
        assert status == 400 and ("bad cursor" in body or "no such status" in body), body
        status, body, _ = get(f"{base}/dead-letters?cursor=zzz")
        assert status == 400 and "bad cursor 'zzz'" in body


@PARTS
def test_cancel_from_the_job_page_stops_a_running_job_and_logs_who_did_it(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    job_id = client.submit_job("gated")
    with serving(redis_url, queue_name) as base, workers(redis_url, queue_name):
        deadline = time.monotonic() + 10
        while client.get_job_status(job_id) != JobStatus.RUNNING:
            assert time.monotonic() < deadline, "the job did not start within 10 s"
            time.sleep(0.02)
        status, body, headers = get(f"{base}/jobs/{job_id}")
        assert status == 200 and 'id="cancel"' in body
        token = headers["set-cookie"].split("streamjobs_csrf=", 1)[1].split(";", 1)[0]
        request = urllib.request.Request(
            f"{base}/jobs/{job_id}/cancel", data=f"csrf={token}".encode(), method="POST",
            headers={"Cookie": f"streamjobs_csrf={token}",
                     "Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert client.get_job_status(job_id) == JobStatus.CANCELLED
        body = get(f"{base}/jobs/{job_id}")[1]
        assert "user=anonymous action=cancel outcome=requested" in body
        assert 'id="cancel"' not in body


@pytest.mark.parametrize("parts", [3], indirect=True)
def test_a_partitioned_queue_takes_only_cursors_with_one_position_per_partition(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    with serving(redis_url, queue_name) as base:
        for query in ("status=pending&cursor=1-0@0", "status=pending&cursor=1-0@0.x",
                      "status=scheduled&cursor=1.2.-3", "status=completed&cursor=1-0..(1-0"):
            status, body, _ = get(f"{base}/jobs?{query}")
            assert status == 400 and "bad cursor" in body, (query, body)
        for query in ("status=pending&cursor=1-0@0.x.", "status=scheduled&cursor=x.4.",
                      "status=completed&cursor=x.x.x"):  # fmt: skip
            assert get(f"{base}/jobs?{query}")[0] == 200, query
        assert get(f"{base}/dead-letters?cursor=1-0.x")[0] == 400
        assert get(f"{base}/dead-letters?cursor=1-0.x.")[0] == 200


@pytest.mark.parametrize("parts", [1, 3, 16], indirect=True)  # 16: a packed cursor
def test_scheduled_jobs_page_through_in_due_order(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    # submitted latest-due first, so due order is not submission order
    ids = client.submit_many([{"handler": "quick", "delay": 4000 - i} for i in range(120)])
    with serving(redis_url, queue_name) as base:
        assert follow(base, f"{base}/jobs?status=scheduled") == ids[::-1]


def csrf_of(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split("streamjobs_csrf=", 1)[1].split(";", 1)[0]


def post_form(url: str, token: str) -> int:
    request = urllib.request.Request(
        url, data=f"csrf={token}".encode(), method="POST",
        headers={"Cookie": f"streamjobs_csrf={token}",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def dead_lettered(client: SyncJobClient, redis_url: str, queue_name: str, ids: list[str]) -> None:
    """Run workers until every job of `ids` (healable, no retries) is a dead letter."""
    with workers(redis_url, queue_name):
        deadline = time.monotonic() + 20
        while any(client.get_job_status(j) != JobStatus.DEAD_LETTER for j in ids):
            assert time.monotonic() < deadline, "the jobs did not dead-letter within 20 s"
            time.sleep(0.05)


@pytest.mark.parametrize("parts", [1, 3, 16], indirect=True)  # 16: a packed cursor
def test_dead_letters_page_newest_first_and_retry_all_and_purge_reach_every_one(
    client: SyncJobClient, redis_url: str, queue_name: str, raw: redis.Redis, parts: int
) -> None:
    ids = client.submit_many([{"handler": "healable", "max_retries": 0} for _ in range(70)])
    dead_lettered(client, redis_url, queue_name, ids)
    dead: list[Any] = [e for keys in client.queue.parts for e in raw.xrange(keys.dead) or []]
    entry_of: dict[str, str] = {f["id"]: e for e, f in dead}

    def newest(job_id: str) -> tuple[int, int]:
        ms, seq = entry_of[job_id].split("-")
        return int(ms), int(seq)

    with serving(redis_url, queue_name) as base:
        seen = follow(base, f"{base}/dead-letters")
        assert len(seen) == 70 and sorted(seen) == sorted(ids)
        assert seen == sorted(seen, key=newest, reverse=True)
        _, body, headers = get(f"{base}/dead-letters")
        assert "Retry all (70)" in body
        assert ("?cursor=z" in body) == (parts == 16)  # sixteen positions: packed
        assert post_form(f"{base}/dead-letters/retry-all", csrf_of(headers)) == 200
        assert {client.get_job_status(j) for j in ids} == {JobStatus.PENDING}
        assert "No dead letters." in get(f"{base}/dead-letters")[1]
        logged: Any = raw.xrevrange(client.queue.keys.events, "+", "-", count=1)
        logged = logged[0][1]
        assert logged["action"] == "retry all" and logged["outcome"] == "70 of 70 queued again"
        dead_lettered(client, redis_url, queue_name, ids)
        _, body, headers = get(f"{base}/dead-letters")
        assert "Purge all (70)" in body
        assert post_form(f"{base}/dead-letters/purge", csrf_of(headers)) == 200
        assert {client.get_job_status(j) for j in ids} == {None}
        assert "No dead letters." in get(f"{base}/dead-letters")[1]


@PARTS
def test_workers_page_shows_each_pool_once_with_all_its_workers(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    with serving(redis_url, queue_name) as base, workers(redis_url, queue_name, count=3):
        body = get(f"{base}/workers")[1]
    pools = re.findall(r'<tr><td class="id">[^<]*</td>(.*?)</tr>', body, re.S)
    assert len(pools) == 1, body
    cells = re.findall(r'<td class="num">([^<]*)</td>', pools[0])
    assert int(cells[1]) + int(cells[2]) == 3 and "healthy" in pools[0]  # busy + idle


@PARTS
def test_finished_jobs_behind_fifteen_hundred_events_fill_one_page(
    client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    done: list[str] = []
    with workers(redis_url, queue_name):
        for _ in range(3):  # one after another: partitions are served in no set order
            done.append(client.submit_job("quick"))
            deadline = time.monotonic() + 10
            while client.get_job_status(done[-1]) != JobStatus.COMPLETED:
                assert time.monotonic() < deadline, "the job did not complete within 10 s"
                time.sleep(0.01)
    client.submit_many([{"handler": "quick", "delay": 3600} for _ in range(1500)])
    with serving(redis_url, queue_name) as base:
        body = get(f"{base}/jobs?status=completed")[1]
    # every partition goes on from the last event it showed, so the scan budget reaches them
    assert ids_in(body) == done[::-1] and "without filling the page" not in body


def test_a_long_merged_cursor_is_packed_and_a_tampered_one_refused() -> None:
    positions: list[str | None] = [f"{1_800_000_000_000 + 7 * p}-{p % 3}" for p in range(1024)]
    positions[5] = None
    cursor = join_cursor(positions)
    assert cursor.startswith("z") and len(cursor) < 4000  # 1024 positions, URL-safe
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert valid_cursor("completed", cursor, 1024) and split_cursor(cursor, 1024) == positions
    assert not valid_cursor("completed", cursor, 1023)  # one position per partition
    assert not valid_cursor("completed", cursor[:-4], 1024)
    assert not valid_cursor("completed", "z" + "A" * 40, 1024)
    assert not valid_cursor("pending", cursor, 1024)  # no stream index: not a pending cursor
    short = join_cursor(["1-0", None, "2-5"])
    assert short == "1-0.x.2-5" and split_cursor(short, 3) == ["1-0", None, "2-5"]


@PARTS
def test_overview_totals_and_oldest_pending_age_cover_every_partition(
    client: SyncJobClient, redis_url: str, queue_name: str, parts: int
) -> None:
    names = (f"old-{queue_name[-3:]}-{i}" for i in range(100))
    oldest = next(j for j in names if partition_of(j, parts) == parts - 1)  # the last partition
    client.submit_job("quick", job_id=oldest)
    time.sleep(1.2)
    client.submit_many([{"handler": "quick"} for _ in range(5)])
    client.submit_many([{"handler": "quick", "delay": 3600} for _ in range(4)])
    with serving(redis_url, queue_name) as base:
        body = get(f"{base}/?partial=1")[1]

    def total(name: str) -> str:
        found = re.search(rf'<b id="{name}">([^<]*)</b>', body)
        assert found, body
        return found.group(1)

    assert total("total-pending") == "6" and total("total-scheduled") == "4"
    age = total("oldest-pending")
    assert age.endswith(" s") and float(age[:-2]) >= 1.2, age
