"""Redis in the states a failover leaves it in: a replica (READONLY), a replica whose master is
down (MASTERDOWN), data still loading (LOADING), a cluster slot on the move (TRYAGAIN), refused
credentials (NOAUTH, WRONGPASS, NOPERM). Callers get a clear error type; pools back off, come
back, and never crash or spin.

Runs our RESP driver, redis-py and coredis on asyncio, and coredis on trio, each against a
redis-server of the test's own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import hiredis
import pytest
import redis
from coredis import exceptions as cex
from redis import exceptions as rex

from streamjobs import (
    AsyncWorkerPool,
    JobService,
    JobStatus,
    RedisAuthError,
    RedisJobQueue,
    RedisNotReadyError,
    RedisUnavailableError,
)
from streamjobs._drivers._errors import translate
from streamjobs._drivers.redis_sync import SyncDriver
from streamjobs._drivers.resp import ReplyError
from streamjobs._scripts import Script
from tests import _combos
from tests._redis import RedisProcess, free_port
from tests.conftest import FAST

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

pytestmark = pytest.mark.anyio

_SOURCE = "return redis.call('SET', KEYS[1], 1)"
_SET = Script("set", _SOURCE, hashlib.sha1(_SOURCE.encode()).hexdigest())



@pytest.fixture
def master(tmp_path: Path) -> Iterator[RedisProcess]:
    """A second, empty redis-server for the test's own to replicate from."""
    server = RedisProcess(tmp_path / "master", "--repl-diskless-sync-delay", "0").start()
    try:
        yield server
    finally:
        server.kill()


def _service(url: str, driver: str, name: str) -> JobService:
    queue = RedisJobQueue(url, name=name, driver=driver)
    return JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))


def _replicate(replica: RedisProcess, master: RedisProcess | None) -> None:
    """Make `replica` follow `master` (None: a master that does not exist) and wait until it
    refuses writes; its data is replaced by the master's once they sync."""
    client = replica.client()
    port = master.port if master is not None else free_port()
    client.replicaof("127.0.0.1", port)
    if master is not None:
        for _ in range(400):
            if client.info("replication").get("master_link_status") == "up":
                return
            time.sleep(0.02)
        raise AssertionError("the replica did not sync within 8 s")


# -- every client's error reaches callers as one type ----------------------------------------

NOT_READY = [
    ReplyError("READONLY You can't write against a read only replica."),
    ReplyError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    ReplyError("LOADING Redis is loading the dataset in memory"),
    ReplyError("TRYAGAIN Multiple keys request during rehashing of slot"),
    ReplyError("ERR Error running script (call to f_x): @user_script:1: -READONLY You can't"),
    rex.ResponseError(
        "Error running script (call to f_x): @user_script:1: -READONLY You can't", status_code="ERR"
    ),
    rex.ReadOnlyError("You can't write against a read only replica.", status_code="READONLY"),
    rex.BusyLoadingError("Redis is loading the dataset in memory", status_code="LOADING"),
    rex.MasterDownError("Link with MASTER is down", status_code="MASTERDOWN"),
    rex.TryAgainError("Multiple keys request during rehashing of slot"),
    cex.ReadOnlyError("You can't write against a read only replica."),
    cex.BusyLoadingError("Redis is loading the dataset in memory"),
    cex.TryAgainError("Multiple keys request during rehashing of slot"),
    cex.ResponseError("MASTERDOWN Link with MASTER is down"),
]
REFUSED = [
    ReplyError("NOAUTH Authentication required."),
    ReplyError("WRONGPASS invalid username-password pair or user is disabled."),
    ReplyError("NOPERM this user has no permissions to run the 'blpop' command"),
    rex.AuthenticationError("Authentication required.", status_code="NOAUTH"),
    rex.AuthenticationError("invalid password", status_code="ERR"),  # Redis before 6
    rex.NoPermissionError("this user has no permissions", status_code="NOPERM"),
    cex.AuthenticationRequiredError("Authentication required."),
    cex.AuthenticationFailureError("invalid username-password pair"),
    cex.AuthorizationError("this user has no permissions to run the 'blpop' command"),
]


@pytest.mark.parametrize("error", NOT_READY, ids=lambda e: f"{type(e).__module__}-{e}"[:60])
def test_a_server_not_ready_is_one_transient_error_type(error: Exception) -> None:
    translated = translate(error)
    assert isinstance(translated, RedisNotReadyError)
    assert isinstance(translated, RedisUnavailableError)  # callers that retry on it still do


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: f"{type(e).__module__}-{e}"[:60])
def test_refused_credentials_or_commands_are_an_auth_error(error: Exception) -> None:
    translated = translate(error)
    assert isinstance(translated, RedisAuthError)
    assert not isinstance(translated, RedisUnavailableError)


def test_hiredis_reply_errors_keep_their_code() -> None:
    reader = hiredis.Reader(replyError=ReplyError)
    reader.feed(b"-READONLY You can't write against a read only replica.\r\n")
    assert isinstance(translate(reader.gets()), RedisNotReadyError)


# -- against real servers ---------------------------------------------------------------------


@pytest.fixture
async def svc(
    combo: tuple[str, str], redis_process: RedisProcess, queue_name: str
) -> AsyncIterator[JobService]:
    """A connected service with the combo's driver on the test's own server, no workers."""
    async with _service(redis_process.url, combo[1], queue_name) as service:
        yield service


async def test_writes_to_a_replica_raise_not_ready(
    svc: JobService, redis_process: RedisProcess, master: RedisProcess
) -> None:
    _replicate(redis_process, master)
    with anyio.fail_after(10), pytest.raises(RedisNotReadyError, match="READONLY"):
        await svc.submit_job("noop")


async def test_a_replica_cut_off_from_its_master_raises_not_ready(
    svc: JobService, redis_process: RedisProcess
) -> None:
    redis_process.client().config_set("replica-serve-stale-data", "no")
    _replicate(redis_process, None)
    with anyio.fail_after(10), pytest.raises(RedisNotReadyError, match="MASTERDOWN"):
        await svc.get_job_status("some-id")


def test_the_sync_driver_raises_not_ready_on_a_replica(
    redis_process: RedisProcess, master: RedisProcess
) -> None:
    _replicate(redis_process, master)
    driver = SyncDriver(redis_process.url)
    try:
        with pytest.raises(RedisNotReadyError):
            driver.eval(_SET, ["k"], [])
    finally:
        driver.close()


# coredis 6.9 leaves the memory streams of a connection that failed unclosed (conftest).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("password", ["", "wrong"], ids=["no-password", "wrong-password"])
async def test_refused_credentials_raise_auth_error(
    combo: tuple[str, str], redis_process: RedisProcess, queue_name: str, password: str
) -> None:
    redis_process.client().config_set("requirepass", "s3cret")
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{redis_process.port}/0"
    with anyio.fail_after(10), pytest.raises(RedisAuthError):
        async with _service(url, combo[1], queue_name):
            pass


async def _wait_status(svc: JobService, job_id: str, want: JobStatus, within: float) -> None:
    assert (await svc.wait_for_result(job_id, timeout=within)).status is want


async def _submit_when_writable(svc: JobService, within: float) -> str:
    """Submit a job, retrying while Redis still says it is not ready (bounded)."""
    with anyio.fail_after(within):
        while True:
            try:
                return await svc.submit_job("noop", max_retries=0)
            except RedisUnavailableError:
                await anyio.sleep(0.05)


async def test_a_pool_rides_out_a_failover_and_serves_once_writable(
    svc: JobService, redis_process: RedisProcess, master: RedisProcess
) -> None:
    """The pool's server becomes a replica (its data, groups included, replaced by the empty
    master's: every write READONLY), then a master again: the pool keeps running through it,
    recreates the groups it finds missing, and serves new jobs."""

    async def noop(job: Any, progress: Any) -> str:
        return "done"

    svc.register_handler("noop", noop)
    await svc.start_workers(2)
    first = await svc.submit_job("noop")
    await _wait_status(svc, first, JobStatus.COMPLETED, 10)
    _replicate(redis_process, master)
    await anyio.sleep(1.5)  # the reader, promoter, heartbeats and leases all meet READONLY
    assert svc.worker_pool.running
    redis_process.client().replicaof("no", "one")
    second = await _submit_when_writable(svc, 10)
    await _wait_status(svc, second, JobStatus.COMPLETED, 15)
    assert svc.worker_pool.running


def _blpop_attempts(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats").get("cmdstat_blpop", {})
    return int(stats.get("calls", 0)) + int(stats.get("rejected_calls", 0))


async def test_a_user_without_blpop_backs_off_instead_of_spinning(
    combo: tuple[str, str], redis_process: RedisProcess, queue_name: str
) -> None:
    """An ACL that refuses the blocking pop makes every read fail at once: the pool must wait
    between tries (a few pops a second at most), not hammer Redis, and must not crash."""
    admin = redis_process.client()
    admin.acl_setuser(
        "worker", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-blpop"],
    )  # fmt: skip
    url = f"redis://worker:pw@127.0.0.1:{redis_process.port}/0"
    async with _service(url, combo[1], queue_name) as service:
        await service.start_workers(2)
        admin.config_resetstat()
        await anyio.sleep(2.0)
        attempts = _blpop_attempts(admin)
        assert service.worker_pool.running
    assert 1 <= attempts <= 30, f"{attempts} BLPOP attempts in 2 s"


async def test_nothing_refused_is_swallowed_as_a_plain_error(
    svc: JobService, redis_process: RedisProcess
) -> None:
    """NOPERM on an ordinary command reaches the caller as RedisAuthError."""
    redis_process.client().acl_setuser(
        "reader", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-evalsha"]
    )
    queue = RedisJobQueue(
        f"redis://reader:pw@127.0.0.1:{redis_process.port}/0",
        name=svc.queue.keys.name, driver=svc.queue.driver_name,
    )  # fmt: skip
    with anyio.fail_after(10), pytest.raises(RedisAuthError, match="NOPERM"):
        async with JobService(queue=queue) as limited:
            await limited.submit_job("noop")


async def test_groups_lost_while_redis_refuses_writes_come_back_once_it_accepts_them(
    svc: JobService, redis_process: RedisProcess
) -> None:
    """The streams and their groups vanish (as in a restart without persistence) while Redis
    refuses writes (full, here): recreating the groups fails too, and the pool waits and tries
    again instead of crashing; once Redis takes writes, the groups are back and jobs run."""

    async def noop(job: Any, progress: Any) -> str:
        return "done"

    svc.register_handler("noop", noop)
    await svc.start_workers(2)
    admin = redis_process.client()
    admin.config_set("maxmemory", 1)
    admin.delete(*svc.queue.keys.streams)
    await anyio.sleep(1.0)  # NOGROUP, then OOM from XGROUP CREATE, over and over
    assert svc.worker_pool.running
    admin.config_set("maxmemory", 0)
    job_id = await _submit_when_writable(svc, 10)
    await _wait_status(svc, job_id, JobStatus.COMPLETED, 15)


#: coredis 6.9 leaves the memory streams of a connection that never connected unclosed (as
#: while Redis restarts), and they warn whenever collected (see conftest).
_COREDIS_LEAKS = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.mark.parametrize(
    "combo",
    [pytest.param(c, id="-".join(c), marks=_COREDIS_LEAKS if c[1] == "coredis" else ())
     for c in _combos.COMBOS],
)  # fmt: skip
async def test_a_restarted_redis_still_loading_its_data_raises_not_ready(
    svc: JobService, redis_process: RedisProcess
) -> None:
    """Redis restarted on a dataset it takes ~2 s to load answers LOADING meanwhile: callers
    get RedisNotReadyError, then answers once it is loaded."""
    if redis_process.version() < (7, 0):  # the embedded Redis 6.2 of a machine without Redis
        pytest.skip("--loading-process-events-interval-bytes (to answer LOADING early) is 7.0+")
    with redis_process.client().pipeline(transaction=False) as pipe:
        for n in range(20_000):
            pipe.set(f"filler:{n}", "x" * 100)
        pipe.save()
        pipe.execute()
    redis_process.kill()
    redis_process.args = ("--key-load-delay", "100", "--loading-process-events-interval-bytes",
                          "1024")  # fmt: skip
    seen: list[RedisUnavailableError] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, redis_process.start, 20.0)
            for _ in range(200):
                try:
                    await svc.get_job_status("some-id")
                except RedisUnavailableError as exc:  # refused until it listens, then LOADING
                    seen.append(exc)
                    if isinstance(exc, RedisNotReadyError):
                        break
                await anyio.sleep(0.02)
        assert isinstance(seen[-1], RedisNotReadyError) and "LOADING" in str(seen[-1])
        assert await svc.get_job_status("some-id") is None  # loaded: served again
