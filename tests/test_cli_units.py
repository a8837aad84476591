"""The CLI's pure parts, without Redis: URL redaction, restart backoff, worker timings, the
options a supervised child gets, and finding an app by MODULE:ATTR."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamjobs import JobService, Timings
from streamjobs.cli import _check_backend, _child_args, _parser
from streamjobs.cli._app import load_service, worker_service, worker_timings
from streamjobs.cli._common import CliError, redact
from streamjobs.cli._supervisor import MAX_BACKOFF, backoff, describe_exit


def test_redact_masks_the_password_and_keeps_the_rest() -> None:
    assert redact("redis://user:s3cret@host:6380/2") == "redis://user:***@host:6380/2"
    assert redact("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_restart_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in (0, 1, 2, 3)] == [0.5, 0.5, 1.0, 2.0]
    assert backoff(50) == MAX_BACKOFF
    assert describe_exit(-9) == "signal SIGKILL" and describe_exit(3) == "exit code 3"


def test_lease_option_sets_the_lease_and_a_reclaim_interval_no_longer_than_it() -> None:
    base = Timings()
    assert worker_timings(base, None) is base
    short = worker_timings(base, 1.0)
    assert (short.lease, short.reclaim_interval) == (1.0, 1.0)
    assert short.heartbeat == 0.5  # a pool beats twice a lease, or a lapse looks like a crash
    with pytest.raises(CliError, match="--lease"):
        worker_timings(base, 0)


def test_a_supervised_child_gets_the_supervisors_options_back() -> None:
    argv = ["worker", "app:svc", "--processes", "3", "--concurrency", "4", "--lease", "1.5",
            "--grace", "0", "--queue", "media", "--burst", "--log-format", "json",
            "--backend", "trio", "--driver", "coredis"]  # fmt: skip
    opts = _parser.build().parse_args(argv)
    child = _parser.build().parse_args(["worker", *_child_args(opts)])
    for name in ("app", "concurrency", "lease", "grace", "queue", "burst", "log_format",
                 "backend", "driver"):  # fmt: skip
        assert getattr(child, name) == getattr(opts, name)
    assert child.processes == 1


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "unitapp.py").write_text(
        "from streamjobs import JobService\n"
        "async def noop(job, progress):\n    return None\n"
        "def make():\n    svc = JobService(name='media')\n"
        "    svc.register_handler('noop', noop)\n    return svc\n"
        "service = make()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "unitapp", raising=False)
    return "unitapp"


def test_an_app_is_found_as_a_service_or_through_a_zero_argument_factory(app_module: str) -> None:
    assert isinstance(load_service(f"{app_module}:service"), JobService)
    made = load_service(f"{app_module}:make")
    assert list(made.worker_pool.handlers) == ["noop"]


def test_the_worker_service_keeps_the_apps_handlers_and_queue_unless_overridden(
    app_module: str,
) -> None:
    app = load_service(f"{app_module}:service")
    same = worker_service(app, None, None, None)
    assert same.queue is app.queue and same.worker_pool.handlers == app.worker_pool.handlers
    moved = worker_service(app, "redis://elsewhere:6390/1", "other", 2.0)
    assert (moved.queue.redis_url, moved.queue.keys.name) == ("redis://elsewhere:6390/1", "other")
    assert moved.queue.keys.key_prefix == app.queue.keys.key_prefix
    assert moved.worker_pool.timings.lease == 2.0
    on_coredis = worker_service(app, None, None, None, "coredis")
    assert on_coredis.queue is not app.queue and on_coredis.queue.driver_name == "coredis"
    assert on_coredis.queue.keys == app.queue.keys


def test_a_trio_worker_without_trio_installed_is_refused_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trio" else real(name, *a)
    )
    with pytest.raises(CliError, match=r"streamjobs\[trio\]"):
        _check_backend("trio", None)
    _check_backend("asyncio", "resp")  # asyncio needs no extra
