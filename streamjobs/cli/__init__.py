"""The `streamjobs` command: worker processes and the operator's inspection tools.

`streamjobs worker MODULE:ATTR` runs an app's handlers; `info`, `workers`, `jobs show`,
`events`, `dead-letters`, `schedules`, `limits` and `submit` inspect and steer a queue.
Every failure an operator can fix prints one line on stderr and exits 1; usage errors print
one line too and exit 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from ..errors import StreamJobsError
from ..service import JobService
from . import _dead, _inspect, _limits, _logs, _parser, _prom, _sched, _submit, _web
from ._app import load_service, worker_service
from ._common import CliError, open_service
from ._supervisor import Supervisor, child_argv
from ._worker import WorkerOptions, serve

__all__ = ["main"]

Command = Callable[[JobService, Any], Awaitable[int]]

#: The commands that only talk to Redis, each run on a connected service.
COMMANDS: dict[str, Command] = {
    "info": lambda svc, o: _inspect.info(svc, o.json),
    "workers": lambda svc, o: _inspect.workers(svc, o.json),
    "jobs show": lambda svc, o: _inspect.show_job(svc, o.job_id, o.json),
    "jobs cancel": _submit.cancel,
    "events": lambda svc, o: _inspect.events(svc, o.count, o.follow, o.json),
    "dead-letters list": lambda svc, o: _dead.list_dead(svc, o.limit, o.json),
    "dead-letters retry": lambda svc, o: (
        _dead.retry_all(svc, o.json) if o.all else _dead.retry_one(svc, o.job_id, o.json)
    ),
    "dead-letters purge": lambda svc, o: _dead.purge(svc, o.json),
    "schedules list": lambda svc, o: _sched.list_schedules(svc, o.json),
    "schedules pause": lambda svc, o: _sched.pause(svc, o.name, o.json),
    "schedules resume": lambda svc, o: _sched.resume(svc, o.name, o.json),
    "schedules trigger": lambda svc, o: _sched.trigger(svc, o.name, o.json),
    "schedules remove": lambda svc, o: _sched.remove(svc, o.name, o.json),
    "limits set": _limits.set_limit,
    "limits list": lambda svc, o: _limits.list_limits(svc, o.json),
    "limits remove": lambda svc, o: _limits.remove(svc, o.key, o.json),
    "submit": _submit.submit,
}


async def _run_command(opts: argparse.Namespace) -> int:
    wait = opts.wait_replicas or 0
    async with open_service(opts.redis_url, opts.queue, opts.key_prefix, opts.partitions,
                            wait) as svc:  # fmt: skip
        return await COMMANDS[opts.command](svc, opts)


def _check_worker_options(opts: argparse.Namespace) -> None:
    if opts.concurrency is not None and opts.concurrency < 1:
        raise CliError(f"--concurrency must be at least 1, not {opts.concurrency}")
    if opts.processes < 1:
        raise CliError(f"--processes must be at least 1, not {opts.processes}")
    if opts.grace is not None and opts.grace < 0:
        raise CliError(f"--grace must not be negative, not {opts.grace:g}")
    if opts.metrics_port is not None and opts.processes > 1:
        raise CliError("--metrics-port serves one process: run --processes 1 per port")
    if opts.wait_replicas is not None and opts.wait_replicas < 0:
        raise CliError(f"--wait-replicas must not be negative, not {opts.wait_replicas}")
    _check_backend(opts.backend, opts.driver)


def _check_backend(backend: str, driver: str | None) -> None:
    """Refuse, before the app is imported, an event loop that is not installed or a driver
    that cannot run on it."""
    if backend == "trio" and importlib.util.find_spec("trio") is None:
        raise CliError("--backend trio needs the trio extra: pip install 'streamjobs[trio]'")
    if backend == "trio" and driver not in (None, "coredis"):
        raise CliError(f"--driver {driver} runs on asyncio only: on trio use --driver coredis")


def _child_args(opts: argparse.Namespace) -> list[str]:
    """The options a supervised child gets: the supervisor's own, one process each."""
    args = [opts.app, "--log-level", opts.log_level, "--log-format", opts.log_format]
    flags = ("concurrency", "redis_url", "queue", "partitions", "lease", "grace", "backend",
             "driver", "wait_replicas")  # fmt: skip
    for flag in flags:
        value = getattr(opts, flag)
        if value is not None:
            args += [f"--{flag.replace('_', '-')}", str(value)]
    return args + (["--burst"] if opts.burst else [])


async def _reachable(svc: JobService) -> None:
    q = svc.queue
    async with open_service(q.redis_url, q.keys.name, q.keys.key_prefix, q.partitions):
        pass


def _run_worker(opts: argparse.Namespace) -> int:
    _check_worker_options(opts)
    _logs.configure(opts.log_level, opts.log_format)
    app = load_service(opts.app)
    svc = worker_service(
        app, opts.redis_url, opts.queue, opts.lease, opts.driver, opts.partitions,
        opts.wait_replicas,
    )  # fmt: skip
    if opts.processes > 1:
        anyio.run(_reachable, svc)  # a wrong URL fails here, once, not in every child
        supervisor = Supervisor(child_argv(_child_args(opts)), opts.processes, burst=opts.burst)
        return anyio.run(supervisor.run)
    metrics = None if opts.metrics_port is None else (opts.metrics_host, opts.metrics_port)
    worker = WorkerOptions(opts.concurrency, opts.grace, opts.burst, metrics)
    return anyio.run(serve, svc, worker, backend=opts.backend)


def _confirmed(opts: argparse.Namespace) -> bool:
    if opts.command != "dead-letters purge" or opts.yes:
        return True
    if not sys.stdin.isatty():
        raise CliError("dead-letters purge deletes every dead letter: pass --yes to confirm")
    answer = input(f"Delete every dead letter of queue {opts.queue!r} for good? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _root(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups, if there is exactly one."""
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, tuple) and len(inner) == 1:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `streamjobs` command line; returns the exit code."""
    opts = _parser.build().parse_args(argv)
    try:
        if opts.command == "worker":
            return _run_worker(opts)
        if opts.command == "metrics":
            return _prom.serve_metrics(
                opts.redis_url,
                opts.queue,
                opts.key_prefix,
                opts.host,
                opts.port,
                opts.partitions,
            )
        if opts.command == "web":
            return _web.serve(opts)
        if not _confirmed(opts):
            return 1
        return anyio.run(_run_command, opts)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        root = _root(exc)
        if not isinstance(root, (CliError, StreamJobsError)):
            raise
        message = " ".join(str(root).split())  # one line, whatever the error carried
        sys.stderr.write(f"streamjobs: error: {message}\n")
        return 1
