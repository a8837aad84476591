"""Periodic schedules: every pool fires them, each tick once, by Redis' clock; misfire
policies after every pool was down; lateness; no overlap; DST; pause, resume, trigger."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
import redis

from streamjobs import AsyncWorkerPool, InvalidJobError, JobDefinition, JobService, RedisJobQueue
from streamjobs import _schedules as sched
from streamjobs.sync import SyncJobClient
from tests.conftest import FAST, load_example, queue_keys

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _ticks_of(raw: redis.Redis, svc: JobService, name: str) -> list[int]:
    """The ticks that queued a run of schedule `name`, from the job records in Redis."""
    prefix = f"{svc.queue.keys.job_prefix}sched:{name}:"
    return sorted(int(k[len(prefix) :]) for k in raw.scan_iter(match=f"{prefix}[0-9]*"))


@pytest.fixture
def service_factory(redis_url: str, queue_name: str) -> Any:
    def make() -> JobService:
        queue = RedisJobQueue(redis_url, name=queue_name)
        return JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))

    return make


# -- pure: cron, DST, planning, describing ---------------------------------------------------


def test_daily_berlin_schedule_runs_once_on_both_dst_change_days() -> None:
    """Spring forward (2026-03-29: 02:00-03:00 does not exist) runs at 03:00 CEST, right
    after the jump; fall back (2026-10-25: 02:00-03:00 happens twice) runs once, at the
    first 02:30 (CEST). The same with a seconds field of 0."""
    for cron in ("30 2 * * *", "0 30 2 * * *"):
        timing = sched.timing_of(cron, None, "Europe/Berlin")
        spring = sched.upcoming(
            timing, sched.next_after(timing, _ms(datetime(2026, 3, 28, 12, tzinfo=BERLIN))), 3
        )
        assert [datetime.fromtimestamp(t / 1000, BERLIN).isoformat() for t in spring] == [
            "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00",
        ]  # fmt: skip
        fall = sched.upcoming(
            timing, sched.next_after(timing, _ms(datetime(2026, 10, 24, 12, tzinfo=BERLIN))), 3
        )
        assert [datetime.fromtimestamp(t / 1000, timezone.utc).isoformat() for t in fall] == [
            "2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00", "2026-10-27T01:30:00+00:00",
        ]  # fmt: skip
        assert fall[1] - fall[0] == 25 * 3_600_000  # the long day: one run, 25 h apart


def test_a_seconds_schedule_follows_the_wall_clock_across_dst() -> None:
    """With a seconds field other than 0 the expression is read literally (cronsim's rule
    for 6 fields): no run in the hour that does not exist, two in the one that repeats."""
    timing = sched.timing_of("15 30 2 * * *", None, "Europe/Berlin")

    def days(start: datetime) -> list[str]:
        first = sched.next_after(timing, _ms(start))
        return [
            datetime.fromtimestamp(t / 1000, BERLIN).isoformat()
            for t in sched.upcoming(timing, first, 3)
        ]

    assert days(datetime(2026, 3, 28, 12, tzinfo=BERLIN)) == [
        "2026-03-30T02:30:15+02:00", "2026-03-31T02:30:15+02:00", "2026-04-01T02:30:15+02:00",
    ]  # fmt: skip
    assert days(datetime(2026, 10, 24, 12, tzinfo=BERLIN)) == [
        "2026-10-25T02:30:15+02:00", "2026-10-25T02:30:15+01:00", "2026-10-26T02:30:15+01:00",
    ]  # fmt: skip


def test_hourly_berlin_schedule_follows_real_hours_across_fall_back() -> None:
    timing = sched.timing_of("0 * * * *", None, "Europe/Berlin")
    start = _ms(datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN))
    ticks = sched.upcoming(timing, sched.next_after(timing, start), 4)
    assert [b - a for a, b in itertools.pairwise(ticks)] == [3_600_000] * 3


def test_missed_ticks_follow_the_misfire_policy() -> None:
    every = sched.timing_of(None, 1, "UTC")
    stored, now = 10_000, 15_400  # ticks 10 s .. 15 s passed; pools came back at 15.3 s
    assert sched.plan(every, stored, now, 15_300, "coalesce").ticks == [15_000]
    assert sched.plan(every, stored, now, 15_300, "skip").ticks == []
    assert sched.plan(every, stored, now, 15_300, "all").ticks == [
        10_000,
        11_000,
        12_000,
        13_000,
        14_000,
        15_000,
    ]
    # a tick after the pools came back is on time and runs under every policy
    assert sched.plan(every, stored, now, 14_500, "skip").ticks == [15_000]
    assert sched.plan(every, stored, now, 14_500, "coalesce").ticks == [14_000, 15_000]
    assert sched.plan(every, stored, now, 15_300, "skip").next == 16_000


def test_backfill_is_bounded_to_the_newest_hundred_ticks() -> None:
    every = sched.timing_of(None, 1, "UTC")
    plan = sched.plan(every, 1_000, 1_000_500, 1_000_600, "all")
    assert len(plan.ticks) == sched.BACKFILL == 100
    assert plan.ticks[-1] == 1_000_000 and plan.ticks[0] == 901_000
    assert plan.dropped == 1000 - 100
    cron = sched.timing_of("* * * * * *", None, "UTC")
    assert sched.plan(cron, 1_000, 1_000_500, 1_000_600, "all").ticks == plan.ticks


def test_expressions_read_as_people_say_them() -> None:
    def said(cron: str | None = None, every: float | None = None, tz: str = "UTC") -> str:
        return sched.timing_of(cron, every, tz).describe()

    assert said(every=30) == "every 30 s"
    assert said(every=300) == "every 5 min"
    assert said(every=86_400) == "every day"
    assert said("0 2 * * *") == "at 02:00 every day"
    assert said("0 0 2 * * *", tz="Europe/Berlin") == "at 02:00 every day (Europe/Berlin)"
    assert said("*/15 * * * *") == "every 15 min"
    assert said("0 9 * * 1-5") == "at 09:00 on Monday to Friday"
    assert said("*/10 * * * * *") == "every 10 s"
    assert said("5 4 * JAN *") == "cron 5 4 * JAN *"


# -- the API ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_bad_schedules_name_the_field_and_write_nothing(
    svc: JobService, raw: redis.Redis
) -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("cron", {}), ("cron", {"cron": "* * * * *", "every": 5}), ("cron", {"cron": "61 * * * *"}),
        ("cron", {"cron": "* * *"}), ("every", {"every": 0}), ("every", {"every": -1}),
        ("every", {"every": "5"}), ("tz", {"every": 5, "tz": "Mars/Olympus"}),
        ("misfire", {"every": 5, "misfire": "later"}),
        ("misfire", {"every": 5, "misfire": "all"}),  # needs overlap=True
        ("max_lateness", {"every": 5, "max_lateness": -1}),
        ("overlap", {"every": 5, "overlap": "no"}),
        ("priority", {"every": 5, "priority": "urgent"}),
        ("timeout", {"every": 5, "timeout": 0}), ("args", {"every": 5, "args": "abc"}),
    ]  # fmt: skip
    keys_before = queue_keys(raw, svc)
    for field, options in bad:
        with pytest.raises(InvalidJobError) as caught:
            await svc.schedule("nightly", "backup", **options)
        assert caught.value.field == field, options
    with pytest.raises(InvalidJobError, match="name"):
        await svc.schedule("has space", "backup", every=5)
    with pytest.raises(InvalidJobError, match="handler"):
        await svc.schedule("nightly", "", every=5)
    assert queue_keys(raw, svc) == keys_before
    assert await svc.get_schedules() == []


@pytest.mark.anyio
async def test_schedule_again_updates_it_and_a_paused_one_stays_paused(svc: JobService) -> None:
    first = await svc.schedule("report", "build_report", cron="0 2 * * *", args=(1,))
    assert first.description == "at 02:00 every day" and not first.paused
    assert len(first.next_fire_times) == 5
    assert all(t.hour == 2 and t.minute == 0 for t in first.next_fire_times)
    again = await svc.schedule("report", "build_report", cron="0 2 * * *", args=(2,))
    assert again.next_fire_times == first.next_fire_times and again.args == (2,)
    assert await svc.pause_schedule("report") and not await svc.pause_schedule("report")
    moved = await svc.schedule("report", "build_report", cron="0 3 * * *", tz="Europe/Berlin")
    assert moved.paused and moved.next_fire_times == []
    assert await svc.resume_schedule("report") and not await svc.resume_schedule("report")
    [info] = await svc.get_schedules()
    assert info.description == "at 03:00 every day (Europe/Berlin)"
    assert [t.astimezone(BERLIN).hour for t in info.next_fire_times] == [3] * 5
    assert await svc.unschedule("report") and not await svc.unschedule("report")
    assert await svc.get_schedules() == []
    assert not await svc.pause_schedule("report") and not await svc.resume_schedule("report")
    assert await svc.trigger_schedule("report") is None


@pytest.mark.anyio
async def test_trigger_runs_a_paused_schedule_once_now(svc: JobService) -> None:
    ran: list[str] = []

    async def backup(job: JobDefinition, progress: Any) -> str:
        ran.append(job.id)
        return "ok"

    svc.register_handler("backup", backup)
    await svc.schedule("nightly", "backup", cron="0 2 * * *", args=("db",))
    await svc.pause_schedule("nightly")
    job_id = await svc.trigger_schedule("nightly")
    assert job_id is not None and job_id.startswith("sched:nightly:manual-")
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run_workers, 2)
        result = await svc.wait_for_result(job_id, timeout=10)
        await svc.stop_workers()
    assert result.result == "ok" and ran == [job_id]
    info = await svc.get_schedule("nightly")
    assert info is not None and info.paused and info.last_job_id == job_id and info.fired == 1


def test_sync_client_manages_schedules(redis_url: str, queue_name: str) -> None:
    with SyncJobClient(redis_url, name=queue_name) as client:
        info = client.schedule("sync-every", "tick", every=timedelta(minutes=5))
        assert info.spec == "every 5 min" and len(info.next_fire_times) == 5
        gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(info.next_fire_times)}
        assert gaps == {300.0}
        assert client.pause_schedule("sync-every") and client.get_schedules()[0].paused
        assert client.resume_schedule("sync-every") and not client.get_schedules()[0].paused
        job_id = client.trigger_schedule("sync-every")
        assert job_id is not None and client.get_job(job_id) is not None
        with pytest.raises(InvalidJobError, match="every"):
            client.schedule("sync-every", "tick", every=0)
        assert client.unschedule("sync-every") and client.get_schedules() == []


# -- firing -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_overlap_skips_ticks_while_the_last_run_runs(svc: JobService) -> None:
    running, most = 0, 0

    async def slow(job: JobDefinition, progress: Any) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(1.2)
        running -= 1

    svc.register_handler("slow", slow)
    await svc.schedule("slow", "slow", every=0.25)
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run_workers, 4)
        await anyio.sleep(2.6)
        info = await svc.get_schedule("slow")
        await svc.unschedule("slow")
        await svc.stop_workers()
    assert most == 1  # never two runs at once, though four workers were free
    assert info is not None and 1 <= info.fired <= 3 and info.skipped >= 3


@pytest.mark.anyio
async def test_a_paused_schedule_does_not_fire_until_resumed(
    svc: JobService, raw: redis.Redis
) -> None:
    async def noop(job: JobDefinition, progress: Any) -> None:
        return None

    svc.register_handler("noop", noop)
    await svc.schedule("paused", "noop", every=0.2)
    await svc.pause_schedule("paused")
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run_workers, 1)
        await anyio.sleep(1.0)
        assert _ticks_of(raw, svc, "paused") == []
        await svc.resume_schedule("paused")
        await anyio.sleep(1.3)  # the pools see the change within a second
        await svc.stop_workers()
    assert _ticks_of(raw, svc, "paused")


@pytest.mark.anyio
async def test_schedules_survive_a_restart_of_every_pool_and_misfires_follow_policy(
    service_factory: Any, raw: redis.Redis
) -> None:
    """Run pools, stop them all for longer than the gap, start again: the ticks missed in
    between run once (coalesce), never (skip) or all (all)."""

    async def noop(job: JobDefinition, progress: Any) -> None:
        return None

    async with service_factory() as svc:
        for misfire in ("coalesce", "skip", "all"):
            await svc.schedule(misfire, "noop", every=1, misfire=misfire, overlap=True)
    for round_ in range(2):
        async with service_factory() as svc:
            svc.register_handler("noop", noop)
            async with anyio.create_task_group() as tg:
                await tg.start(svc.run_workers, 2)
                await anyio.sleep(1.6)
                await svc.stop_workers()
            before = {m: _ticks_of(raw, svc, m) for m in ("coalesce", "skip", "all")}
        if round_ == 0:
            await anyio.sleep(sched.GAP_MS / 1000 + 1.2)  # every pool is down: ticks pass
            first_run = before
    back = int(raw.hget(svc.queue.keys.schedule_keys[2], "back") or 0)
    for misfire in ("coalesce", "skip", "all"):
        ran_before = first_run[misfire]
        assert ran_before, misfire  # it fired while the pools ran
        missed = [t for t in before[misfire] if ran_before[-1] < t < back]
        expected = list(range(ran_before[-1] + 1000, back, 1000))
        assert len(expected) >= 3
        want = {"coalesce": expected[-1:], "skip": [], "all": expected}[misfire]
        assert missed == want, misfire
        assert any(t >= back for t in before[misfire]), misfire  # and goes on firing


@pytest.mark.anyio
async def test_a_run_later_than_max_lateness_is_dropped(
    service_factory: Any, raw: redis.Redis
) -> None:
    async with service_factory() as svc:
        await svc.schedule("late", "noop", every=0.5, misfire="all", overlap=True, max_lateness=1.0)
    await anyio.sleep(3.5)  # no pool runs: seven ticks pass
    async with service_factory() as svc:
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 1)
            await anyio.sleep(0.3)
            await svc.stop_workers()
        info = await svc.get_schedule("late")
    prefix = svc.queue.keys.job_prefix
    queued = {
        t: int(raw.hget(f"{prefix}sched:late:{t}", "created_at") or 0)
        for t in _ticks_of(raw, svc, "late")
    }
    assert queued and all(0 <= at - tick <= 1_000 for tick, at in queued.items())
    assert info is not None and info.skipped >= 3  # the older ticks were dropped, and counted


# -- three pools in three processes, with clocks 30 s apart -----------------------------------

_POOL = """
import sys, time
import anyio, redis
real = time.time
offset = float(sys.argv[3])
time.time = lambda: real() + offset  # this process' clock is off by `offset` seconds
from streamjobs import AsyncWorkerPool, JobService, RedisJobQueue
url, queue_name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[4])
log = redis.Redis.from_url(url, decode_responses=True)

async def run_for():
    queue = RedisJobQueue(url, name=queue_name)
    svc = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue))
    async def handler(job, progress):
        log.rpush(queue_name + ":runs", job.id)
    svc.register_handler("tick", handler)
    async with svc:
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run_workers, 2)
            print("ready", flush=True)
            await anyio.sleep(seconds)
            await svc.stop_workers()

anyio.run(run_for)
"""


@pytest.fixture
def pools(redis_url: str, queue_name: str) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_three_pools_with_skewed_clocks_fire_each_tick_once(
    redis_url: str, queue_name: str, raw: redis.Redis, pools: list[subprocess.Popen[str]]
) -> None:
    with SyncJobClient(redis_url, name=queue_name) as client:
        client.schedule("each-second", "tick", every=1, overlap=True)  # count every tick
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = textwrap.dedent(_POOL)
    for offset in ("-30", "0", "30"):
        cmd = [sys.executable, "-c", code, redis_url, queue_name, offset, "5"]
        pools.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env))
    for proc in pools:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in pools:
        assert proc.wait(30) == 0
    runs = raw.lrange(f"{queue_name}:runs", 0, -1)
    ticks = sorted(int(job_id.rsplit(":", 1)[1]) for job_id in set(runs))
    assert len(runs) == len(set(runs))  # no tick ran twice
    assert len(ticks) >= 4
    assert [b - a for a, b in itertools.pairwise(ticks)] == [1000] * (len(ticks) - 1)  # none lost
    assert all(t % 1000 == 0 for t in ticks)
    # the ticks are Redis' seconds, not any pool's skewed clock
    redis_now = raw.time()[0] * 1000
    assert all(redis_now - 15_000 < t <= redis_now for t in ticks)
    assert abs(time.time() * 1000 - redis_now) < 5_000


# -- the command line -------------------------------------------------------------------------

Cli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli(redis_url: str, queue_name: str) -> Cli:
    """Run `python -m streamjobs ...` on this test's queue; fails on a traceback."""

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "streamjobs", *args, "--queue", queue_name]
        done = subprocess.run(
            [*cmd, "--redis-url", redis_url], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert (done.returncode == 0) is ok, done.stderr
        return done

    return run


def cli_json(cli: Cli, *args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def test_cli_lists_pauses_resumes_triggers_and_removes_schedules(
    cli: Cli, redis_url: str, queue_name: str
) -> None:
    with SyncJobClient(redis_url, name=queue_name) as client:
        client.schedule("backup", "process_backup", cron="0 2 * * *", tz="Europe/Berlin")
        client.schedule("poll", "poll_feeds", every=30)
    listed = {s["name"]: s for s in cli_json(cli, "schedules", "list")}
    assert listed["backup"]["description"] == "at 02:00 every day (Europe/Berlin)"
    assert listed["poll"]["description"] == "every 30 s"
    assert len(listed["backup"]["next_fire_times"]) == 5
    berlin = [
        datetime.fromisoformat(t).astimezone(BERLIN) for t in listed["backup"]["next_fire_times"]
    ]
    assert {(t.hour, t.minute) for t in berlin} == {(2, 0)}
    text = cli("schedules", "list").stdout
    assert "at 02:00 every day" in text and "every 30 s" in text
    assert cli_json(cli, "schedules", "pause", "poll") == {"schedule": "poll", "paused": True}
    assert "paused" in cli("schedules", "list").stdout
    assert cli_json(cli, "schedules", "resume", "poll") == {"schedule": "poll", "resumed": True}
    triggered = cli_json(cli, "schedules", "trigger", "backup")
    assert triggered["job_id"].startswith("sched:backup:manual-")
    assert cli_json(cli, "schedules", "remove", "backup") == {"schedule": "backup", "removed": True}
    failed = cli("schedules", "trigger", "backup", ok=False)
    assert failed.returncode == 1
    assert (
        failed.stderr.strip() == f"streamjobs: error: no schedule 'backup' on queue '{queue_name}'"
    )
    assert [s["name"] for s in cli_json(cli, "schedules", "list")] == ["poll"]


# -- the guide's nightly backup, without APScheduler ------------------------------------------


@pytest.mark.anyio
async def test_scheduled_backup_example_schedules_at_two_and_runs_when_triggered(
    svc: JobService,
) -> None:
    module = load_example("scheduled_backup")
    svc.register_handler("process_backup", module.process_backup)
    info = await module.schedule_daily_backup(svc, "Europe/Berlin")
    assert info.description == "at 02:00 every day (Europe/Berlin)"
    assert [t.astimezone(BERLIN).hour for t in info.next_fire_times] == [2] * 5
    again = await module.schedule_daily_backup(svc, "Europe/Berlin")  # every start of the app
    assert again.next_fire_times == info.next_fire_times
    job_id = await svc.trigger_schedule("daily-backup")
    assert job_id is not None
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run_workers, 1)
        result = await svc.wait_for_result(job_id, timeout=10)
        await svc.stop_workers()
    assert result.result == f"backup done ({job_id})"
