"""A queue behind Redis Sentinel (`redis+sentinel://`), and `wait_replicas`: jobs run through
the sentinels on every driver and loop, the sync client and the CLI; a failover under load
loses no job that a submit acknowledged and the workers follow the new primary; WAIT falls
short with a clear ReplicationError when no replica answers."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from coredis import exceptions as cex
from redis import exceptions as rex
from redis.asyncio.sentinel import MasterNotFoundError

from streamjobs import (
    AsyncWorkerPool,
    ConfigurationError,
    JobDefinition,
    JobService,
    JobStatus,
    RedisJobQueue,
    ReplicationError,
    StreamJobsError,
)
from streamjobs._drivers._errors import translate
from streamjobs._drivers.sentinel import RECHECK
from streamjobs._drivers.sentinel import parse as parse_sentinel
from streamjobs._keys import QueueKeys
from streamjobs._server_binary import redis_binary
from streamjobs.cli import _child_args, _parser
from streamjobs.cli._app import worker_service
from streamjobs.cli._common import redact
from streamjobs.errors import RedisNotReadyError, RedisUnavailableError
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests._redis import RedisProcess, free_port
from tests.conftest import FAST
from tests.faults import app as fault_app
from tests.faults._invariants import Report, check_invariants

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "jobs"
#: Replicas resync at once (Redis 7 waits 5 s before a diskless sync by default).
FAST_SYNC = ("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")


class Sentinel:
    """One redis-server in sentinel mode watching SERVICE, ended by PID."""

    def __init__(self, directory: Path, primary_port: int, quorum: int) -> None:
        self.dir, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\nlogfile sentinel.log\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 5\n"
        )
        self.proc = subprocess.Popen(
            [redis_binary().path, str(directory / "sentinel.conf"), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)

    def primary_port(self) -> int | None:
        with self.client() as client:
            found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(found[1]) if found else None

    def failover(self) -> None:
        """SENTINEL FAILOVER: promote a replica now, demoting the live primary."""
        with self.client() as client:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Topology:
    """A primary, its replicas and the sentinels watching them, on loopback."""

    primary: RedisProcess
    replicas: list[RedisProcess]
    sentinels: list[Sentinel]
    nodes: dict[int, RedisProcess] = field(default_factory=dict)

    def url(self, tail: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}{tail}"

    def current(self) -> RedisProcess:
        """The node the sentinels name as primary now."""
        port = self.sentinels[0].primary_port()
        assert port is not None
        return self.nodes[port]

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.kill()
        for node in self.nodes.values():
            node.kill()


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _synced(replica: RedisProcess, primary_port: int) -> bool:
    with replica.client() as client:
        info = client.info("replication")
    return bool(info.get("master_port") == primary_port and info["master_link_status"] == "up")


def start_topology(base: Path, replicas: int, sentinels: int) -> Topology:
    """Primary, `replicas` replicas in sync, and `sentinels` sentinels (quorum: a majority)
    that see every replica; closed by the caller."""
    primary = RedisProcess(base / "primary", *FAST_SYNC)
    topology = Topology(primary, [], [])
    try:
        primary.start()
        topology.nodes[primary.port] = primary
        for n in range(replicas):
            args = (*FAST_SYNC, "--replicaof", "127.0.0.1", str(primary.port))
            replica = RedisProcess(base / f"replica{n}", *args).start()
            topology.replicas.append(replica)
            topology.nodes[replica.port] = replica
        for replica in topology.replicas:
            _wait(lambda r=replica: _synced(r, primary.port), 15, "a replica in sync")
        quorum = sentinels // 2 + 1
        for n in range(sentinels):
            topology.sentinels.append(Sentinel(base / f"sentinel{n}", primary.port, quorum))

        def seen() -> bool:
            for s in topology.sentinels:
                with s.client() as client:
                    known = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                    others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
                if len(known) < replicas or len(others) < sentinels - 1:
                    return False
            return True

        _wait(seen, 40, "the sentinels to see every replica and each other")
    except BaseException:
        topology.close()
        raise
    return topology


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """A primary, one replica and three sentinels, shared by the tests that fail nothing."""
    topology = start_topology(tmp_path_factory.mktemp("sentinel"), replicas=1, sentinels=3)
    try:
        yield topology
    finally:
        topology.close()


async def square(job: JobDefinition, progress: Any) -> int:
    return int(job.args[0]) ** 2


# -- (1) jobs through the sentinels -----------------------------------------------------------


@pytest.mark.anyio
async def test_jobs_run_through_a_sentinel_url_on_every_driver_and_loop(
    combo: tuple[str, str], cluster: Topology, queue_name: str
) -> None:
    driver = None if combo[1] == "resp" else combo[1]  # resp alone does not follow sentinels
    queue = RedisJobQueue(cluster.url(), name=queue_name, driver=driver)
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    service.register_handler("square", square)
    with anyio.fail_after(30):
        async with service:
            await service.start_workers(2)
            ids = [await service.submit_job("square", [n]) for n in range(5)]
            results = [await service.wait_for_result(i, timeout=10) for i in ids]
    assert [(r.status, r.result) for r in results] == [
        (JobStatus.COMPLETED, n * n) for n in range(5)
    ]
    with cluster.current().client() as client:  # the jobs live on the primary the sentinels name
        assert client.hget(QueueKeys(name=queue_name).job(ids[0]), "status") == "COMPLETED"


def test_the_resp_driver_refuses_a_sentinel_url_naming_the_drivers_that_serve_it(
    cluster: Topology, queue_name: str
) -> None:
    queue = RedisJobQueue(cluster.url(), name=queue_name, driver="resp")
    with pytest.raises(ConfigurationError, match=r"redis-py.*coredis"):
        anyio.run(queue.connect)


def test_the_sync_client_submits_and_reads_through_a_sentinel_url(
    cluster: Topology, queue_name: str
) -> None:
    with SyncJobClient(cluster.url(), name=queue_name, wait_replicas=1) as jobs:
        job_id = jobs.submit_job("square", args=(3,))
        assert jobs.get_job_status(job_id) is JobStatus.PENDING
        assert jobs.cancel_job(job_id)
    replica = cluster.replicas[0] if cluster.current() is cluster.primary else cluster.primary
    with replica.client() as client:  # WAIT returned: the replica holds the change already
        assert client.hget(QueueKeys(name=queue_name).job(job_id), "status") == "CANCELLED"


# -- (3) wait_replicas --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_replicas_without_a_replica_raises_replication_error_naming_the_written_job(
    combo: tuple[str, str], redis_url: str, queue_name: str
) -> None:
    """The session's Redis has no replica: WAIT 1 times out, the submit says so, and the job
    it names is there (on the primary)."""
    queue = RedisJobQueue(
        redis_url, name=queue_name, driver=combo[1], wait_replicas=1, wait_timeout=0.2
    )
    with anyio.fail_after(15):
        async with JobService(queue=queue) as service:
            started = anyio.current_time()
            with pytest.raises(ReplicationError, match=r"only 0 of 1 replica") as one:
                await service.submit_job("square", [2], job_id="held")
            assert anyio.current_time() - started < 5
            assert one.value.job_ids == ["held"] and "may be lost in a failover" in str(one.value)
            assert await service.get_job_status("held") is JobStatus.PENDING
            with pytest.raises(ReplicationError) as many:
                await service.submit_many([{"handler": "square", "args": [n]} for n in range(3)])
            assert len(many.value.job_ids) == 3
            assert [await service.get_job_status(i) for i in many.value.job_ids] == [
                JobStatus.PENDING
            ] * 3
            with pytest.raises(ReplicationError):
                await service.cancel_job("held")
            assert await service.get_job_status("held") is JobStatus.CANCELLED
            with pytest.raises(ReplicationError) as deduped:  # names the job standing for it
                await service.submit_job("square", [1], job_id="first", dedupe_key="k")
            assert deduped.value.job_ids == ["first"]
            with pytest.raises(ReplicationError) as again:
                await service.submit_job("square", [1], job_id="second", dedupe_key="k")
            assert again.value.job_ids == ["first"]


@pytest.mark.anyio
async def test_workers_with_wait_replicas_and_no_replica_still_run_jobs_logging_the_shortfall(
    combo: tuple[str, str], redis_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker's own changes stand on the primary: a shortfall is logged, never taken for a
    failure that would lose track of a job."""
    queue = RedisJobQueue(
        redis_url, name=queue_name, driver=combo[1], wait_replicas=1, wait_timeout=0.05
    )
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    service.register_handler("square", square)
    with anyio.fail_after(30):
        async with service:
            await service.start_workers(1)
            with pytest.raises(ReplicationError) as caught:
                await service.submit_job("square", [4])
            result = await service.wait_for_result(caught.value.job_ids[0], timeout=15)
    assert (result.status, result.result) == (JobStatus.COMPLETED, 16)
    assert "may be lost in a failover" in caplog.text


@pytest.mark.anyio
async def test_with_wait_replicas_a_change_is_on_the_replica_the_moment_it_returns(
    combo: tuple[str, str], cluster: Topology, queue_name: str
) -> None:
    primary = cluster.current()
    replica = next(n for n in cluster.nodes.values() if n is not primary)
    url = cluster.url() if combo[1] != "resp" else primary.url  # resp: WAIT on a plain URL
    queue = RedisJobQueue(url, name=queue_name, driver=combo[1], wait_replicas=1)
    keys = QueueKeys(name=queue_name)
    with replica.client() as on_replica, anyio.fail_after(20):
        async with JobService(queue=queue) as service:
            for n in range(20):  # read right after each: no replication lag is visible
                job_id = await service.submit_job("square", [n])
                assert on_replica.hget(keys.job(job_id), "status") == "PENDING"
                assert await service.cancel_job(job_id)
                assert on_replica.hget(keys.job(job_id), "status") == "CANCELLED"
            ids = await service.submit_many([{"handler": "square"} for _ in range(250)])
            assert all(on_replica.exists(keys.job(i)) for i in ids)


def test_wait_replicas_must_be_a_whole_number_of_replicas() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError, match="wait_replicas"):
            RedisJobQueue("redis://127.0.0.1:1/0", wait_replicas=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="wait_timeout"):
        RedisJobQueue("redis://127.0.0.1:1/0", wait_replicas=1, wait_timeout=0)


# -- (4) the CLI ---------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamjobs", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_the_cli_submits_and_reads_through_a_sentinel_url(
    cluster: Topology, queue_name: str
) -> None:
    url = cluster.url()
    common = ["--redis-url", url, "--queue", queue_name, "--json"]
    done = _cli("submit", "square", "--args", "[5]", "--job-id", "cli-1", "--wait-replicas", "1",
                *common)  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = _cli("info", *common)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["pending"]["normal"] == 1


def test_a_sentinel_url_without_a_service_is_one_line_naming_what_is_wrong(
    cluster: Topology,
) -> None:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in cluster.sentinels)
    for url, wrong in (
        (f"redis+sentinel://{hosts}/", "names no service"),
        (f"redis+sentinel://{hosts}/{SERVICE}?ssl=1", "unknown option"),
        (f"redis+sentinel://127.0.0.1:notaport/{SERVICE}", "no valid port"),
    ):
        done = _cli("info", "--redis-url", url)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and wrong in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


# -- (2) a failover under load ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """The fault suite's ledger (a Redis no failover touches): handler runs per job."""
    server = RedisProcess(tmp_path_factory.mktemp("ledger")).start()
    mp = pytest.MonkeyPatch()
    mp.setenv(fault_app.LEDGER_ENV, server.url)
    mp.setattr(fault_app, "_ledger", None)
    try:
        with server.client() as client:
            yield client
    finally:
        mp.undo()
        server.kill()


@pytest.fixture
def leftovers_collected(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """coredis leaves the memory streams of connections a failover cut unclosed: collected
    after the test, their ResourceWarning ignored (as tests/conftest.py does after trio).
    The workers' warnings are not captured: their records hold those connections (through
    the errors' tracebacks) past the test, where nothing would ignore their warnings."""
    caplog.set_level(logging.ERROR, logger="streamjobs")
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@dataclass
class Submitted:
    """What the submitters learnt: ids a submit returned, and ids it raised for."""

    acknowledged: list[str] = field(default_factory=list)
    unreplicated: list[str] = field(default_factory=list)
    errors: int = 0
    first_after_fault: float | None = None
    #: When each acknowledged submit returned, in seconds after the fault (None: before).
    returned_at: dict[str, float | None] = field(default_factory=dict)


async def _submit_through(
    service: JobService, prefix: str, count: int, out: Submitted, faulted: list[float]
) -> None:
    """Submit `count` jobs, each retried under its own id until a submit returns or says it
    wrote the job without a replica; a plain failure (Redis unreachable) is retried."""
    for n in range(count):
        job_id = f"{prefix}-{n}"
        for _ in range(400):
            try:
                await service.submit_job("work", [0.01], job_id=job_id)
            except ReplicationError:
                out.unreplicated.append(job_id)
                break
            except StreamJobsError:
                out.errors += 1
                await anyio.sleep(0.05)
                continue
            out.acknowledged.append(job_id)
            out.returned_at[job_id] = time.monotonic() - faulted[0] if faulted else None
            if faulted and out.first_after_fault is None:
                out.first_after_fault = time.monotonic() - faulted[0]
            break
        await anyio.sleep(0.01)


async def _until(check: Any, timeout: float, what: str) -> None:
    """Poll `check` every 50 ms until it holds; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _present(node: RedisProcess, keys: QueueKeys, ids: list[str]) -> dict[str, str]:
    """The status of each job of `ids` that has a record on `node`."""
    with node.client() as client:
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(keys.job(job_id), "status")
        return {i: s for i, s in zip(ids, pipe.execute()) if s is not None}


def _all_done(node: RedisProcess, keys: QueueKeys, ids: list[str]) -> bool:
    """Every job of `ids` found on `node` completed (and some found)."""
    found = _present(node, keys, ids)
    return bool(found) and all(s == "COMPLETED" for s in found.values())


#: (event loop, driver, fault, wait_replicas of the submitters): asyncio picks redis-py.
FAILOVERS = [
    ("asyncio", None, "shutdown", 1), ("trio", "coredis", "shutdown", 1),
    ("asyncio", None, "sentinel-failover", 1),
    ("asyncio", None, "sentinel-failover", 2), ("trio", "coredis", "sentinel-failover", 2),
]  # fmt: skip
FAILOVER_IDS = [f"{loop}-{fault}-wait{wait}" for loop, _, fault, wait in FAILOVERS]


# Connections cut by the failover (coredis' memory streams among them) warn when collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize(("backend", "driver", "fault", "wait"), FAILOVERS, ids=FAILOVER_IDS)
def test_a_failover_under_load_loses_no_acknowledged_submit_and_workers_follow_the_new_primary(
    tmp_path: Path, ledger: redis.Redis, backend: str, driver: str | None, fault: str,
    wait: int, leftovers_collected: None,
) -> None:  # fmt: skip
    """SHUTDOWN NOSAVE of the primary while workers run and submitters submit with
    wait_replicas=1: every submit that returned is found on the new primary and completes,
    and the fault suite's invariant holds there. SENTINEL FAILOVER instead leaves the old
    primary up and writable until the clients learn of the new one: with wait_replicas=1 the
    submits acknowledged in that window (by the replica that is then re-pointed) are lost;
    with wait_replicas=2 (every replica) none is, as the promoted replica acknowledged all."""
    topology = start_topology(tmp_path, replicas=2, sentinels=3)
    name = f"failover-{backend}-{fault}-{wait}"
    keys = QueueKeys(name=name)
    out, faulted = Submitted(), list[float]()
    timings: dict[str, float] = {}
    try:
        old = topology.primary

        async def scenario() -> None:
            queue = RedisJobQueue(topology.url(), name=name, driver=driver, wait_replicas=1,
                                  wait_timeout=1.0)  # fmt: skip
            service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
            service.register_handler("work", fault_app.work)
            submitter = JobService(queue=RedisJobQueue(  # its own wait_replicas
                topology.url(), name=name, driver=driver, wait_replicas=wait, wait_timeout=0.2
            ))  # fmt: skip
            async with service, submitter, anyio.create_task_group() as tg:
                await service.start_workers(4)
                for prefix in (f"{name}-a", f"{name}-b"):  # the ledger is shared
                    tg.start_soon(_submit_through, submitter, prefix, 60, out, faulted)
                await _until(lambda: len(out.acknowledged) >= 30, 20, "30 submits")
                faulted.append(time.monotonic())
                if fault == "shutdown":
                    await anyio.to_thread.run_sync(old.stop)
                else:
                    await anyio.to_thread.run_sync(topology.sentinels[0].failover)
                sentinel = topology.sentinels[0]
                await _until(lambda: sentinel.primary_port() not in (None, old.port), 30,
                             "a replica to be promoted")  # fmt: skip
                timings["promoted"] = time.monotonic() - faulted[0]
                await _until(lambda: len(out.acknowledged) + len(out.unreplicated) >= 120, 30,
                             "every submit to return")  # fmt: skip
                every = out.acknowledged + out.unreplicated
                await _until(lambda: _all_done(topology.current(), keys, every), 30,
                             "every job to complete on the new primary")  # fmt: skip
                timings["drained"] = time.monotonic() - faulted[0]

        anyio.run(scenario, backend=backend)
        new = topology.current()
        assert new is not old
        found = _present(new, keys, out.acknowledged)
        lost = [i for i in out.acknowledged if i not in found]
        if fault == "shutdown" or wait == 2:
            assert lost == [], "submits acknowledged by the replicas were lost in the failover"
        else:  # the old primary took writes until the clients asked the sentinels again
            window = timings["promoted"] + 2 * RECHECK + 1
            late = {i: out.returned_at[i] for i in lost}
            assert all(t is not None and t < window for t in late.values()), (window, late)
        with new.client() as client:
            report: Report | None
            try:
                report = check_invariants(client, ledger, keys, list(found), lease=FAST.lease)
            except AssertionError as exc:
                # A start that the old primary took and lost lets a job run once more
                # (at least once); nothing else may go wrong.
                problems = str(exc).splitlines()[1:]
                if fault == "shutdown" or not all(" handler runs for " in p for p in problems):
                    raise
                report = None
        if report is not None:
            assert report.statuses["COMPLETED"] >= len(found)
        assert _all_done(new, keys, list(found))
        assert out.first_after_fault is not None and out.first_after_fault < 20
        print(f"\n{backend}/{fault}: promoted after {timings['promoted']:.2f}s, first submit "
              f"after {out.first_after_fault:.2f}s, all done after {timings['drained']:.2f}s; "
              f"{len(out.acknowledged)} acknowledged ({len(lost)} lost), "
              f"{len(out.unreplicated)} unreplicated, {out.errors} retried")  # fmt: skip
    finally:
        topology.close()


def test_a_sentinel_url_is_read_and_redacted_without_its_passwords() -> None:
    url = "redis+sentinel://app:s%40cret@h1:1,[::1]:2,h3/jobs/2?sentinel_password=pw"
    parsed = parse_sentinel(url)
    assert parsed.sentinels == (("h1", 1), ("::1", 2), ("h3", 26379))
    assert (parsed.service, parsed.db, parsed.username, parsed.password) == (
        "jobs", 2, "app", "s@cret",
    )  # fmt: skip
    assert parsed.sentinel_password == "pw"
    shown = redact(url)
    assert "cret" not in shown and "pw" not in shown.split("?")[1] and "h1:1" in shown
    with pytest.raises(ConfigurationError, match="not supported"):
        parse_sentinel("rediss+sentinel://h1/jobs")


def test_the_worker_cli_takes_wait_replicas_and_hands_it_to_its_children() -> None:
    argv = ["worker", "app:svc", "--processes", "2", "--wait-replicas", "2"]
    opts = _parser.build().parse_args(argv)
    child = _parser.build().parse_args(["worker", *_child_args(opts)])
    assert child.wait_replicas == 2
    app = JobService(name="media", wait_replicas=1, wait_timeout=0.5)
    assert worker_service(app, None, None, None).queue is app.queue  # the app's own setting
    moved = worker_service(app, None, None, None, None, wait_replicas=2)
    assert (moved.queue.wait_replicas, moved.queue.wait_timeout) == (2, 0.5)
    elsewhere = worker_service(app, "redis://elsewhere:6390/1", None, None)
    assert elsewhere.queue.wait_replicas == 1  # kept when another option makes a new queue
    done = _cli("worker", "app:svc", "--wait-replicas", "-1")
    assert done.returncode == 1 and "--wait-replicas must not be negative" in done.stderr


def test_a_failovers_errors_become_the_errors_workers_back_off_on() -> None:
    """What a client meets during a failover, on each client, is RedisUnavailableError (or
    its RedisNotReadyError), which every worker loop retries with backoff."""
    unreachable = [
        MasterNotFoundError("No master found for 'jobs'"),
        rex.ConnectionError("The previous master is now a slave"),  # redis-py on READONLY
        cex.PrimaryNotFoundError("No primary found for 'jobs'"),
        cex.StalePrimaryError("Primary jobs at 127.0.0.1:1 reports a role of 'slave'"),
        ConnectionRefusedError(111, "Connection refused"),
    ]
    for error in unreachable:
        assert isinstance(translate(error), RedisUnavailableError), error
    not_ready = [
        cex.ReadOnlyError("You can't write against a read only replica."),
        rex.ReadOnlyError("You can't write against a read only replica."),
        rex.BusyLoadingError("Redis is loading the dataset in memory"),
        rex.MasterDownError("Link with MASTER is down and replica-serve-stale-data is no"),
    ]
    for error in not_ready:
        assert isinstance(translate(error), RedisNotReadyError), error
