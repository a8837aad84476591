"""Every URL form a user has, on every driver and both event loops: `rediss://` with the `ssl_*`
options (a redis-server on its TLS port, certified by a throwaway CA made here), `unix://`
with `?db=N`, and an ACL user's name and password in the URL; the sync client and the worker
CLI as well."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from streamjobs import AsyncWorkerPool, JobDefinition, JobService, JobStatus, RedisJobQueue
from streamjobs._drivers import connect
from streamjobs._keys import QueueKeys
from streamjobs.errors import ConfigurationError, RedisAuthError, RedisUnavailableError
from streamjobs.sync import SyncJobClient
from tests import _combos
from tests._redis import RedisProcess, free_port
from tests.conftest import FAST

combo, anyio_backend = _combos.combo, _combos.anyio_backend  # fixtures: every loop and driver

pytestmark = pytest.mark.anyio


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA (`<name>.key`, `<name>.pem`); returns its certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)  # fmt: skip
    return directory / f"{name}.pem"


@dataclass(frozen=True)
class Tls:
    """A redis-server on a TLS port, and the CA files a client may trust."""

    server: RedisProcess
    port: int
    ca: Path
    other_ca: Path

    def url(self, query: str = "") -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca}{query}"


def server_cert(
    directory: Path, names: str = "DNS:localhost,IP:127.0.0.1", stem: str = "server"
) -> tuple[Path, Path]:
    """A server key and certificate for `names` (subjectAltName), signed by the CA `ca`."""
    (directory / f"{stem}.ext").write_text(f"subjectAltName={names}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis", "-keyout",
             f"{stem}.key", "-out", f"{stem}.csr", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{stem}.ext", "-out", f"{stem}.pem",
             cwd=directory)  # fmt: skip
    return directory / f"{stem}.pem", directory / f"{stem}.key"


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Tls]:
    """A redis-server with a TLS port (clients need no certificate of their own)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, other_ca = make_ca(certs, "ca"), make_ca(certs, "other")
    cert, key = server_cert(certs)
    port = free_port()
    server = RedisProcess(tmp_path / "redis", "--tls-port", str(port), "--tls-cert-file",
                          str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                          "--tls-auth-clients", "no")  # fmt: skip
    try:
        server.start()
    except RuntimeError:
        server.kill()
        pytest.skip("this redis-server was built without TLS (BUILD_TLS=yes)")
    try:
        yield Tls(server, port, ca, other_ca)
    finally:
        server.kill()


@pytest.fixture
def unix_socket() -> Iterator[tuple[RedisProcess, str]]:
    """A redis-server also listening on a unix socket (in a short dir: paths are capped)."""
    with tempfile.TemporaryDirectory(prefix="sj", dir="/tmp") as short:
        path = f"{short}/r.sock"
        server = RedisProcess(Path(short) / "redis", "--unixsocket", path,
                              "--unixsocketperm", "700")  # fmt: skip
        server.start()
        try:
            yield server, path
        finally:
            server.kill()


async def square(job: JobDefinition, progress: Any) -> int:
    return int(job.args[0]) ** 2


async def _run_one_job(url: str, driver: str, name: str) -> str:
    """Submit a job over `url` and have a pool on the same URL run it to completion."""
    queue = RedisJobQueue(url, name=name, driver=driver)
    service = JobService(queue=queue, worker_pool=AsyncWorkerPool(queue, timings=FAST))
    service.register_handler("square", square)
    async with service:
        await service.start_workers(1)
        job_id = await service.submit_job("square", [7])
        result = await service.wait_for_result(job_id, timeout=10)
    assert (result.status, result.result) == (JobStatus.COMPLETED, 49)
    return job_id


async def test_a_job_runs_end_to_end_over_tls(
    combo: tuple[str, str], tls: Tls, queue_name: str
) -> None:
    with anyio.fail_after(30):
        await _run_one_job(tls.url(), combo[1], queue_name)


async def test_ssl_cert_reqs_none_connects_without_trusting_the_ca(
    combo: tuple[str, str], tls: Tls, queue_name: str
) -> None:
    url = f"rediss://127.0.0.1:{tls.port}/0?ssl_cert_reqs=none"
    with anyio.fail_after(30):
        await _run_one_job(url, combo[1], queue_name)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_the_host_name_is_checked_unless_ssl_check_hostname_is_false(
    combo: tuple[str, str], tls: Tls, queue_name: str
) -> None:
    """Every driver checks the name as redis-py does (coredis alone would not)."""
    cert, key = server_cert(tls.ca.parent, "DNS:elsewhere.example", "elsewhere")
    with tls.server.client() as admin:  # both at once (Redis 7): each alone mismatches
        admin.execute_command("CONFIG", "SET", "tls-cert-file", str(cert), "tls-key-file", str(key))
    queue = RedisJobQueue(tls.url(), name=queue_name, driver=combo[1])
    with anyio.fail_after(10), pytest.raises(RedisUnavailableError, match=r"(?i)mismatch"):
        async with JobService(queue=queue):
            pass
    with anyio.fail_after(30):
        await _run_one_job(tls.url("&ssl_check_hostname=false"), combo[1], queue_name)


# coredis 6.9 leaves the memory streams of a connection that failed unclosed (conftest).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_a_server_certified_by_another_ca_is_refused_at_once(
    combo: tuple[str, str], tls: Tls, queue_name: str
) -> None:
    url = f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={tls.other_ca}"
    queue = RedisJobQueue(url, name=queue_name, driver=combo[1])
    with anyio.fail_after(10), pytest.raises(RedisUnavailableError, match=r"(?i)certificate"):
        async with JobService(queue=queue):
            pass


async def test_a_job_runs_end_to_end_over_a_unix_socket(
    combo: tuple[str, str], unix_socket: tuple[RedisProcess, str], queue_name: str
) -> None:
    server, path = unix_socket
    with anyio.fail_after(30):
        job_id = await _run_one_job(f"unix://{path}?db=3", combo[1], queue_name)
    with redis.Redis(port=server.port, db=3, decode_responses=True) as db3:
        assert db3.hget(QueueKeys(name=queue_name).job(job_id), "status") == "COMPLETED"


@pytest.fixture
def acl_user(redis_process: RedisProcess) -> str:
    """An ACL user `app` (password `pw`); the default user needs another password."""
    client = redis_process.client()
    client.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                       commands=["+@all"])  # fmt: skip
    client.config_set("requirepass", "only-for-default")
    return f"redis://app:pw@127.0.0.1:{redis_process.port}/0"


async def test_an_acl_user_and_password_in_the_url_authenticate(
    combo: tuple[str, str], acl_user: str, queue_name: str
) -> None:
    with anyio.fail_after(30):
        await _run_one_job(acl_user, combo[1], queue_name)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_a_wrong_acl_user_in_the_url_is_refused(
    combo: tuple[str, str], acl_user: str, queue_name: str
) -> None:
    queue = RedisJobQueue(acl_user.replace("app:", "nobody:"), name=queue_name, driver=combo[1])
    with anyio.fail_after(10), pytest.raises(RedisAuthError):
        async with JobService(queue=queue):
            pass


def _sync_round_trip(url: str, name: str) -> None:
    """Submit and read back a job with the sync client over `url`."""
    with SyncJobClient(url, name=name, timings=FAST) as client:
        job_id = client.submit_job("square", [3])
        assert client.get_job_status(job_id) is JobStatus.PENDING


def test_the_sync_client_speaks_tls_unix_and_acl_urls(
    tls: Tls, unix_socket: tuple[RedisProcess, str], acl_user: str, queue_name: str
) -> None:
    _sync_round_trip(tls.url(), queue_name)
    _sync_round_trip(f"unix://{unix_socket[1]}?db=2", queue_name)
    _sync_round_trip(acl_user, queue_name)


WORKER_APP = """
from streamjobs import JobService

async def square(job, progress):
    return int(job.args[0]) ** 2

service = JobService()
service.register_handler("square", square)
"""


def test_the_worker_cli_runs_a_job_over_tls(tls: Tls, tmp_path: Path, queue_name: str) -> None:
    (tmp_path / "tlsapp.py").write_text(WORKER_APP)
    with SyncJobClient(tls.url(), name=queue_name) as client:
        job_id = client.submit_job("square", [5])
        cmd = [sys.executable, "-m", "streamjobs", "worker", "tlsapp:service", "--burst", "--queue",
               queue_name, "--redis-url", tls.url(), "--log-level", "warning"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
        result = client.wait_for_result(job_id, timeout=5)
    assert (result.status, result.result) == (JobStatus.COMPLETED, 25)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("driver", ["resp", "coredis"])
async def test_an_unknown_ssl_cert_reqs_names_the_option(driver: str) -> None:
    with pytest.raises(ConfigurationError, match="ssl_cert_reqs='sometimes'"):
        connect("rediss://127.0.0.1:1/0?ssl_cert_reqs=sometimes", driver)


@pytest.mark.parametrize("combo", [("asyncio", "resp"), ("trio", "coredis")], indirect=True)
async def test_a_rediss_or_unix_url_keeps_the_default_driver_of_the_loop(
    combo: tuple[str, str],
) -> None:
    expected = {"resp": "RespDriver", "coredis": "CoredisDriver"}[combo[1]]
    for url in ("rediss://127.0.0.1:1/0?ssl_cert_reqs=none", "unix:///tmp/none.sock?db=1"):
        driver = connect(url)
        assert type(driver).__name__ == expected
        await driver.aclose()
