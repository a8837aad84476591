"""Bad invocations of `streamjobs`: each prints one line on stderr, no traceback, and exits
non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._redis import free_port

ROOT = Path(__file__).resolve().parent.parent
BAD_INVOCATIONS = [
    "missing-module", "missing-attribute", "not-a-service", "no-colon", "a-class",
    "zero-concurrency", "wrong-url-scheme", "bad-args-json", "asyncio-driver-on-trio",
]  # fmt: skip


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    cmd = [sys.executable, "-m", "streamjobs", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("streamjobs: error: ")
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("worker", "no_such_module:service"), ("cannot import", "no_such_module")),
        (("worker", "examples.app:missing"), ("no attribute", "missing")),
        (("worker", "examples.app:QUALITIES"), ("not a JobService",)),
        (("worker", "examples.app"), ("MODULE:ATTR",)),
        (("worker", "streamjobs:JobService"), ("is a class",)),
        (("worker", "examples.app:service", "--concurrency", "0"), ("--concurrency",)),
        (("info", "--redis-url", "http://localhost:6379"), ("invalid Redis URL",)),
        (("submit", "process_media", "--args", "{not json"), ("--args", "JSON")),
        (("worker", "examples.app:service", "--backend", "trio", "--driver", "resp"),
         ("--driver resp", "asyncio only", "--driver coredis")),
    ],
    ids=BAD_INVOCATIONS,
)
def test_a_bad_invocation_prints_one_line_and_exits_non_zero(
    args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    assert_one_line_error(run(*args), *words)


@pytest.mark.parametrize("command", [("info",), ("worker", "examples.app:service")])
def test_an_unreachable_redis_prints_one_line_and_exits_non_zero(command: tuple[str, ...]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert_one_line_error(run(*command, "--redis-url", url), "unreachable", url)


def test_an_app_that_fails_to_import_prints_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('settings missing')\n")
    done = run("worker", "broken:service", cwd=tmp_path)
    assert_one_line_error(done, "importing 'broken' failed", "settings missing")


def test_an_app_without_handlers_prints_one_line(tmp_path: Path) -> None:
    app = "from streamjobs import JobService\nservice = JobService()\n"
    (tmp_path / "empty.py").write_text(app)
    assert_one_line_error(run("worker", "empty:service", cwd=tmp_path), "no handlers")


def test_an_unknown_job_and_an_unconfirmed_purge_exit_non_zero(redis_url: str) -> None:
    assert_one_line_error(run("jobs", "show", "nope", "--redis-url", redis_url), "no job 'nope'")
    purge = run("dead-letters", "purge", "--redis-url", redis_url)
    assert_one_line_error(purge, "--yes")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--driver", "x"), ("--driver", "'x'", "resp", "redis-py", "coredis")),
        (("--backend", "curio"), ("--backend", "'curio'", "asyncio", "trio")),
    ],
    ids=["driver", "backend"],
)
def test_an_unknown_worker_driver_or_backend_prints_one_line_and_exits_2(
    args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    done = run("worker", "examples.app:service", *args)
    assert_one_line_error(done, "invalid choice", *words)
    assert done.returncode == 2
