"""`streamjobs submit HANDLER --args JSON --kwargs JSON --priority high`."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidJobError
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
            partition_key=opts.partition_key,
        )  # fmt: skip
    except InvalidJobError as exc:
        raise CliError(f"job refused: {exc}") from None
    if opts.json:
        print_json({"id": job_id})
    else:
        console().print(job_id)
    return 0
