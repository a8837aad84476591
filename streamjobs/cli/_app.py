"""Finding the operator's app (`MODULE:ATTR`) and building the worker's service from it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import sys
from typing import Any

from ..async_worker import AsyncWorkerPool, Timings
from ..redis_queue import RedisJobQueue
from ..service import JobService
from ._common import CliError


def _import(module_name: str) -> Any:
    """Import a module from the working directory first, as `python -m` would."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CliError(f"cannot import {module_name!r}: no module named {missing!r}") from None
        raise CliError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # the app's own import-time error, shown as one line
        raise CliError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None


def _attribute(module: Any, spec: str, path: str) -> Any:
    obj = module
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"{spec}: {obj.__name__!r} has no attribute {part!r}") from None
    return obj


def _call_factory(spec: str, factory: Any) -> Any:
    try:
        inspect.signature(factory).bind()
    except (TypeError, ValueError):
        raise CliError(f"{spec} is not a JobService nor a zero-argument factory") from None
    try:
        made = factory()
    except Exception as exc:
        raise CliError(f"{spec}() failed: {type(exc).__name__}: {exc}") from None
    if inspect.iscoroutine(made):
        made.close()
        raise CliError(f"{spec} is an async factory: make it a plain def returning a JobService")
    return made


def load_service(spec: str) -> JobService:
    """The JobService named by `MODULE:ATTR` (or returned by the zero-argument factory there),
    checked to have handlers: a worker without any would dead-letter every job it takes."""
    module_name, _, path = spec.partition(":")
    if not module_name or not path:
        raise CliError(f"{spec!r} is not MODULE:ATTR (for example examples.app:service)")
    obj = _attribute(_import(module_name), spec, path)
    if not isinstance(obj, JobService) and callable(obj) and not inspect.isclass(obj):
        obj = _call_factory(spec, obj)
    if not isinstance(obj, JobService):
        kind = "class" if inspect.isclass(obj) else type(obj).__name__
        raise CliError(f"{spec} is a {kind}, not a JobService (or a factory returning one)")
    if not obj.worker_pool.handlers:
        raise CliError(f"{spec} has no handlers: call register_handler() when it is built")
    return obj


def worker_timings(base: Timings, lease: float | None) -> Timings:
    """The app's timings with `--lease` applied; lapsed leases are looked for at least as
    often as a lease lasts, so a short lease also means a quick takeover."""
    if lease is None:
        return base
    if lease <= 0:
        raise CliError(f"--lease must be positive, not {lease:g}")
    reclaim = min(base.reclaim_interval, lease)
    return dataclasses.replace(base, lease=lease, reclaim_interval=reclaim)


def _queue_for(
    app: JobService, redis_url: str | None, name: str | None, driver: str | None,
    partitions: int | None = None,
    wait_replicas: int | None = None,
) -> RedisJobQueue:  # fmt: skip
    base = app.queue
    same = partitions in (None, base.partitions)
    if (
        redis_url is None and name is None and driver in (None, base.driver_name) and same
        and wait_replicas in (None, base.wait_replicas)
    ):  # fmt: skip
        return base
    return RedisJobQueue(
        redis_url or base.redis_url, base.keys.key_prefix, base.max_dead_letters,
        name=name or base.keys.name, result_ttl=base.result_ttl,
        events_maxlen=base.events_maxlen, max_payload=base.max_payload,
        driver=driver or base.driver_name, partitions=partitions or base.partitions,
        wait_replicas=base.wait_replicas if wait_replicas is None else wait_replicas,
        wait_timeout=base.wait_timeout,
    )  # fmt: skip


def worker_service(
    app: JobService, redis_url: str | None, name: str | None, lease: float | None,
    driver: str | None = None, partitions: int | None = None,
    wait_replicas: int | None = None,
) -> JobService:  # fmt: skip
    """A fresh service for this worker: the app's handlers and event bus on the app's queue,
    or on the queue that `--redis-url` / `--queue` / `--driver` / `--partitions` /
    `--wait-replicas` name (keeping the app's key prefix and settings)."""
    queue = _queue_for(app, redis_url, name, driver, partitions, wait_replicas)
    app_pool = app.worker_pool
    pool = AsyncWorkerPool(
        queue, app_pool.handlers, timings=worker_timings(app_pool.timings, lease),
        event_bus=app_pool.event_bus,
    )  # fmt: skip
    return JobService(queue=queue, worker_pool=pool)
