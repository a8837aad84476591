"""`streamjobs submit HANDLER --args JSON --kwargs JSON --priority high` and
`streamjobs jobs cancel ID`."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidJobError
from ..models import CancelOutcome
from ..service import JobService
from ._common import CliError, console, print_json


def parse_json(option: str, raw: str | None, kind: type) -> Any:
    """The JSON value of `--args` / `--kwargs`, checked to be a list / an object."""
    if raw is None:
        return kind()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        wanted = "a JSON array" if kind is list else "a JSON object"
        raise CliError(f"{option} must be {wanted}, not {type(value).__name__}")
    return value


async def submit(svc: JobService, opts: Any) -> int:
    """Queue one job and print its id (JSON: {"id": ...})."""
    args = parse_json("--args", opts.args, list)
    kwargs = parse_json("--kwargs", opts.kwargs, dict)
    try:
        job_id = await svc.submit_job(
            opts.handler, args, kwargs, priority=opts.priority, timeout=opts.timeout,
            max_retries=opts.max_retries, job_id=opts.job_id, delay=opts.delay,
            dedupe_key=opts.dedupe_key, dedupe_for=opts.dedupe_for, dedupe_mode=opts.dedupe_mode,
            partition_key=opts.partition_key, limit_key=opts.limit_key,
        )  # fmt: skip
    except InvalidJobError as exc:
        raise CliError(f"job refused: {exc}") from None
    if opts.json:
        print_json({"id": job_id})
    else:
        console().print(job_id)
    return 0


_CANCELLED = {
    CancelOutcome.CANCELLED: "{} cancelled before it started",
    CancelOutcome.REQUESTED: "{} cancelled while running: its worker stops it",
}


async def cancel(svc: JobService, opts: Any) -> int:
    """Cancel one job and say what that did (JSON: {"id": ..., "outcome": ...}); a job that
    is finished or unknown is an error (exit 1), so that scripts can tell."""
    outcome = await svc.cancel_job(opts.job_id)
    if not outcome:
        raise CliError(f"nothing to cancel: job {opts.job_id!r} is finished or unknown")
    if opts.json:
        print_json({"id": opts.job_id, "outcome": outcome.value})
    else:
        console().print(_CANCELLED[outcome].format(opts.job_id))
    return 0
