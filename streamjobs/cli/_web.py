"""`streamjobs web`: serve the dashboard of one queue with uvicorn."""

from __future__ import annotations

import argparse
import importlib.util

import anyio

from ..errors import ConfigurationError
from ..redis_queue import RedisJobQueue
from ._common import CliError, connect


def serve(opts: argparse.Namespace) -> int:
    """Check the options and Redis, then serve until interrupted."""
    missing = [m for m in ("starlette", "jinja2", "uvicorn", "multipart")
               if importlib.util.find_spec(m) is None]  # fmt: skip
    if missing:
        raise CliError(f"streamjobs web needs the web extra: pip install 'streamjobs[web]' "
                       f"({', '.join(missing)} missing)")  # fmt: skip
    if not 0 < opts.port < 65536:
        raise CliError(f"--port must be between 1 and 65535, not {opts.port}")
    if opts.partitions is not None and opts.partitions < 1:
        raise CliError(f"--partitions must be at least 1, not {opts.partitions}")
    import uvicorn

    from ..web import create_app

    queue = RedisJobQueue(opts.redis_url, opts.key_prefix, name=opts.queue,
                          partitions=opts.partitions)  # fmt: skip
    try:
        app = create_app(queue.redis_url, read_only=opts.read_only, basic_auth=opts.basic_auth,
                         key_prefix=opts.key_prefix, name=opts.queue,
                         partitions=opts.partitions)  # fmt: skip
    except ConfigurationError as exc:
        raise CliError(f"--basic-auth: {exc}") from None
    anyio.run(_check, queue)  # a wrong URL fails here as one line, before the server starts
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning")
    return 0


async def _check(queue: RedisJobQueue) -> None:
    await connect(queue)
    await queue.close()
