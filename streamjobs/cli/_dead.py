"""`streamjobs dead-letters list|retry|purge`, with a progress bar on bulk work."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..service import JobService
from ._common import CliError, console, err_console, print_json

BATCH = 500  # dead letters purged per script call, so Redis never blocks long


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=err_console(), disable=quiet, transient=True,
    )  # fmt: skip


async def list_dead(svc: JobService, limit: int, as_json: bool) -> int:
    """The newest dead letters: id, handler, attempts, error."""
    dead = await svc.get_dead_letters(limit)
    if as_json:
        print_json([{"id": j.id, "handler": j.handler, "args": j.args, "kwargs": j.kwargs,
                     "priority": j.priority.name.lower(), "attempts": j.attempts,
                     "error": j.error} for j in dead])  # fmt: skip
        return 0
    table = Table(title=f"{len(dead)} dead letter(s), newest first")
    for column in ("id", "handler", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for j in dead:
        table.add_row(j.id, j.handler, str(j.attempts), j.error or "")
    console().print(table)
    return 0


async def retry_one(svc: JobService, job_id: str, as_json: bool) -> int:
    """Queue one dead letter again with fresh attempts."""
    if not await svc.retry_dead_letter(job_id):
        raise CliError(f"{job_id!r} is not a dead letter on queue {svc.queue.keys.name!r}")
    _report(as_json, {"retried": 1}, f"{job_id} queued again")
    return 0


async def retry_all(svc: JobService, as_json: bool) -> int:
    """Queue every dead letter again (newest first), with a progress bar."""
    dead = await svc.get_dead_letters(svc.queue.max_dead_letters)
    retried = 0
    with _progress(as_json) as bar:
        task = bar.add_task("retrying dead letters", total=len(dead))
        for job in dead:
            retried += await svc.retry_dead_letter(job.id)
            bar.advance(task)
    _report(as_json, {"retried": retried, "skipped": len(dead) - retried},
            f"{retried} dead letter(s) queued again")  # fmt: skip
    return 0


async def purge(svc: JobService, as_json: bool) -> int:
    """Delete every dead letter and its record, in batches, with a progress bar."""
    purged, left = 0, -1
    with _progress(as_json) as bar:
        task = bar.add_task("purging dead letters", total=None)
        while left != 0:
            done, left = await svc.purge_dead_letters(BATCH)
            purged += done
            bar.update(task, completed=purged, total=purged + left)
            if done == 0:
                break
    _report(as_json, {"purged": purged}, f"{purged} dead letter(s) purged")
    return 0


def _report(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        print_json(data)
    else:
        console().print(text)
