"""Rich tables and lines for people; plain dicts for `--json`. Pure: no I/O but printing."""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime, timezone
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from ..models import WorkerInfo


def loads(raw: str | None) -> Any:
    """Decode a JSON field of a job record, keeping the raw text when it is not JSON."""
    if raw is None or raw == "":
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def clock(entry_id: str) -> str:
    """The UTC time of a stream entry id, from its millisecond part."""
    ms = int(entry_id.split("-", 1)[0])
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def event_dict(entry: str, fields: dict[str, str]) -> dict[str, Any]:
    """An events-stream entry as a flat dict with its id and time."""
    return {"id": entry, "time": clock(entry), **fields}


def event_line(entry: str, fields: dict[str, str], as_json: bool) -> None:
    """Print one event: a JSON line, or time, type, job id and the remaining fields."""
    if as_json:
        line = orjson.dumps(event_dict(entry, fields)).decode()
    else:
        rest = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("type", "job_id", "at"))
        line = f"{clock(entry)}  {fields.get('type', '?'):<16} {fields.get('job_id', '')}  {rest}"
    sys.stdout.write(line.rstrip() + "\n")
    sys.stdout.flush()


def worker_dict(w: WorkerInfo) -> dict[str, Any]:
    """A WorkerInfo as JSON-ready fields."""
    return dataclasses.asdict(w)


def _health(ok: bool) -> str:
    return "[green]healthy[/]" if ok else "[red]UNHEALTHY[/]"


def workers_table(workers: list[WorkerInfo]) -> Table:
    """One row per worker slot."""
    table = Table(title=f"{len(workers)} worker(s)")
    for column in ("worker", "status", "job", "done", "failed", "uptime", "lag", "health"):
        table.add_column(column, justify="right" if column in ("done", "failed") else "left")
    for w in workers:
        table.add_row(
            w.id, w.status, w.current_job or "", str(w.jobs_completed), str(w.jobs_failed),
            f"{w.uptime:.0f}s", f"{w.loop_lag:.2f}s", _health(w.healthy),
        )  # fmt: skip
    return table


def _queue_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"queue {data['queue']!r}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, depth in data["pending"].items():
        table.add_row(f"pending ({name})", str(depth))
    rows = [("running", data["running"]), ("scheduled", data["scheduled"]),
            ("waiting for dependencies", data.get("waiting", 0)),
            ("waiting to retry", data["retrying"]), ("dead letters", data["dead_letters"]),
            ("completed, last minute", data["last_minute"]["completed"]),
            ("failed, last minute", data["last_minute"]["failed"]),
            ("completed, all time", data["totals"]["completed"]),
            ("failed, all time", data["totals"]["failed"]),
            ("maxmemory-policy", data["maxmemory_policy"] or "unknown"),
            ("served by", data.get("topology") or "Redis")]  # fmt: skip
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _pools_table(pools: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(pools)} worker process(es)")
    for column in ("pool", "host", "pid", "busy", "done", "failed", "lag", "heartbeat", "health"):
        table.add_column(column)
    for p in pools:
        table.add_row(
            p["id"], p["host"], str(p["pid"]), f"{p['busy']}/{p['workers']}", str(p["completed"]),
            str(p["failed"]), f"{p['loop_lag']:.2f}s", f"{p['heartbeat_age']:.1f}s ago",
            _health(p["healthy"]),
        )  # fmt: skip
    return table


def limits_table(limits: list[dict[str, Any]]) -> Table:
    """Per limit key: its waiting jobs and what holds them back."""
    table = Table(title="limits")
    for column in ("key", "concurrency", "rate", "running", "waiting", "held back by"):
        table.add_column(column, justify="right" if column in ("running", "waiting") else "left")
    for lim in limits:
        table.add_row(
            lim["key"], str(lim["concurrency"] or "-"), lim["rate"] or "-", str(lim["running"]),
            str(lim["waiting"]), lim["held_back"] or "",
        )  # fmt: skip
    return table


def info(out: Console, data: dict[str, Any]) -> None:
    """`streamjobs info` for people: the queue's numbers, then its worker processes."""
    out.print(_queue_table(data))
    out.print(_pools_table(data["pools"]))
    if data.get("limits"):
        out.print(limits_table(data["limits"]))


def job(out: Console, view: dict[str, Any]) -> None:
    """`streamjobs jobs show` for people: the record, then its history from the events."""
    table = Table(title=f"job {view['id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in view.items():
        if key in ("id", "history") or value is None:
            continue
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        table.add_row(key, shown)
    out.print(table)
    if view["history"]:
        history = Table(title="history (events stream, UTC)")
        for column in ("time", "event", "attempt", "detail"):
            history.add_column(column, overflow="fold")
        for e in view["history"]:
            detail = e.get("error") or e.get("message") or e.get("worker") or e.get("reason") or ""
            when = e["time"][11:23]  # HH:MM:SS.mmm of the ISO time (UTC)
            history.add_row(when, e["type"], e.get("attempt", ""), detail)
        out.print(history)
