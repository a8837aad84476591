"""`streamjobs metrics`: a queue's gauges at /metrics for Prometheus, until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from ..errors import ConfigurationError, StreamJobsError
from ..sync import SyncJobClient
from ._common import CliError, redact


class _Stop(Exception):
    """Raised in the serving thread by SIGTERM: end the server and exit 0."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def serve_metrics(
    redis_url: str | None, queue: str, key_prefix: str, host: str, port: int,
    partitions: int | None = None,
) -> int:  # fmt: skip
    """Serve until a signal; an unreachable Redis or a port in use is one line, exit 1. A
    partitioned queue's gauges sum its partitions."""
    try:
        from ..prometheus import queue_metrics_server
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    client = SyncJobClient(redis_url, key_prefix=key_prefix, name=queue, partitions=partitions)
    try:
        try:
            client.get_metrics()  # a wrong URL fails here, once, not at every scrape
        except StreamJobsError as exc:
            raise CliError(f"cannot use Redis at {redact(client.queue.redis_url)}: {exc}") from None
        try:
            server = queue_metrics_server(client, host, port)
        except OSError as exc:
            raise CliError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            sys.stdout.write(f"serving queue {queue!r} metrics at http://{host}:{port}/metrics\n")
            sys.stdout.flush()
            server.serve_forever()
        except (_Stop, KeyboardInterrupt):
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.server_close()
    finally:
        client.close()
    return 0
