"""The invariant check itself: it must catch each kind of violation it claims to, or the
scenarios that end with it prove nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from tests._redis import RedisProcess
from tests.faults._harness import KEYS, LEASE, RESP, submit
from tests.faults._invariants import check_invariants


def lose_the_entry(client: redis.Redis) -> None:
    client.xtrim(KEYS.streams[2], maxlen=0)


def deliver_to_a_ghost(client: redis.Redis) -> None:
    client.xreadgroup("workers", "ghost-pool", {KEYS.streams[2]: ">"}, count=1)


def leave_a_past_due_delayed_job(client: redis.Redis) -> None:
    client.hset(KEYS.job("late"), mapping={"id": "late", "status": "SCHEDULED"})
    client.zadd(KEYS.delayed, {"late": 1})


def miscount_completions(client: redis.Redis) -> None:
    client.hincrby(KEYS.stats, "completed", 1)


def complete_without_running(client: redis.Redis) -> None:
    lose_the_entry(client)
    client.hset(KEYS.job("j0"), mapping={"status": "COMPLETED", "result": "null"})


@pytest.mark.parametrize(
    ("corrupt", "complaint"),
    [
        (lose_the_entry, "stream entries"),
        (deliver_to_a_ghost, "pending for ghost-pool"),
        (leave_a_past_due_delayed_job, "was due"),
        (miscount_completions, "metrics completed"),
        (complete_without_running, "never ran"),
    ],
)
def test_the_invariant_check_catches_each_violation(
    corrupt: Callable[[redis.Redis], None], complaint: str,
    server: RedisProcess, ledger: redis.Redis,
) -> None:  # fmt: skip
    client = server.client()
    ids = submit(server.url, [{"handler": "work", "args": (0,), "job_id": "j0"}], via=RESP)
    check_invariants(client, ledger, KEYS, ids, lease=LEASE)  # sound before
    corrupt(client)
    with pytest.raises(AssertionError, match=complaint):
        check_invariants(client, ledger, KEYS, ids, lease=LEASE)
