"""`wait_replicas`: a WAIT after each script, on the script's own connection, and what its
reply means. Every driver sends `Wait.command` right behind the script (in the same write
where it can) and hands the count back to `Wait.check`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, ReplicationError, StreamJobsError
from ._errors import translate

#: Default longest wait for the replicas' acknowledgement (seconds).
DEFAULT_WAIT_TIMEOUT = 5.0

#: Scripts that write nothing: no WAIT after them.
READ_ONLY = frozenset({"metrics"})


@dataclass(frozen=True)
class Wait:
    """Wait for `replicas` replicas to acknowledge, at most `timeout_ms`."""

    replicas: int
    timeout_ms: int

    @property
    def command(self) -> tuple[str, int, int]:
        """The WAIT command to send after a script."""
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, acknowledged: Any, reply: Any) -> Any:
        """The script's reply once enough replicas acknowledged; else ReplicationError (the
        change stands on the primary: the reply rides on the error). A WAIT that failed
        (the connection broke) raises its error."""
        if isinstance(acknowledged, StreamJobsError):
            raise acknowledged
        if isinstance(acknowledged, Exception):
            raise translate(acknowledged) from acknowledged
        count = int(acknowledged)
        if count < self.replicas:
            raise ReplicationError(count, self.replicas, self.timeout_ms, reply=reply)
        return reply


def wait_for(replicas: int, timeout: float = DEFAULT_WAIT_TIMEOUT) -> Wait | None:
    """The Wait for `wait_replicas=replicas` and `wait_timeout=timeout` seconds (None when
    replicas is 0: no WAIT at all); bad values raise ConfigurationError naming them."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ConfigurationError(f"wait_replicas must be an int >= 0, not {replicas!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(f"wait_timeout must be a number of seconds > 0, not {timeout!r}")
    return Wait(replicas, max(1, round(timeout * 1000))) if replicas else None


def check_written(wait: Wait, acknowledged: Any, outcomes: list[Any]) -> None:
    """After pipelined calls and their WAIT: ReplicationError (carrying every call's outcome
    as its reply) when some call wrote and too few replicas acknowledged; nothing when no call
    ran (nothing to replicate). A WAIT refused counts as no acknowledgement."""
    if all(isinstance(o, StreamJobsError) for o in outcomes):
        return
    wait.check(0 if isinstance(acknowledged, Exception) else acknowledged, outcomes)


#: Why a queue on a Redis Cluster refuses `wait_replicas`: WAIT must follow each script on the
#: connection to the node that ran it, which the cluster clients do not offer yet.
CLUSTER_WAIT = (
    "wait_replicas is not supported on a Redis Cluster yet (WAIT must follow each script on the "
    "connection of the node that ran it); use wait_replicas=0 there"
)
