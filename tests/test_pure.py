"""Pure code, no Redis: the key schema, backoff and outcome decisions, validation."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from streamjobs import InvalidJobError, JobPriority, RedisVersionError
from streamjobs._codec import definition, new_job, parse_priority, with_id
from streamjobs._keys import QueueKeys
from streamjobs._outcome import RetryPolicy, Verdict, after_error, reconnect_delay
from streamjobs._replies import check_version
from streamjobs._scripts import script, with_prelude


def crc16(data: bytes) -> int:
    """CRC16/XMODEM, the checksum Redis Cluster slots are made of."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def cluster_slot(key: str) -> int:
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key.encode()) % 16384


@pytest.mark.parametrize("prefix,name", [("streamjobs:", "default"), ("myapp:jobs:", "media")])
def test_every_key_of_a_queue_maps_to_one_cluster_slot(prefix: str, name: str) -> None:
    keys = QueueKeys(prefix, name)
    every = [*keys.scheduling, keys.job("abc123"), keys.pool("host-1-aa"),
             keys.control("host-1-aa"), keys.dedupe_prefix, keys.dedupe("sync-user-42")]
    every.append(f"{keys.schedule_keys[1]}nightly-backup")  # a schedule's hash
    assert len({cluster_slot(k) for k in every}) == 1
    assert all(k.startswith(f"{prefix}{{{name}}}:") for k in every)


def test_streams_are_ordered_from_highest_priority_to_lowest() -> None:
    assert [s.rsplit(":", 1)[1] for s in QueueKeys().streams] == [
        "critical", "high", "normal", "low"
    ]  # fmt: skip


def test_the_guides_backoff_lists_five_delays_doubling_from_two_seconds() -> None:
    policy = RetryPolicy(max_retries=5, retry_delay=2.0, retry_backoff=2.0)
    assert [policy.delay_for(k) for k in range(1, 6)] == [2, 4, 8, 16, 32]


def test_backoff_is_capped_at_300_seconds_even_when_huge() -> None:
    policy = RetryPolicy(max_retries=50, retry_delay=10.0, retry_backoff=10.0)
    assert policy.delay_for(3) == 300
    assert policy.delay_for(10_000) == 300


def test_a_job_runs_at_most_max_retries_plus_one_times() -> None:
    policy = RetryPolicy(max_retries=2, retry_delay=1.0, retry_backoff=3.0)
    first = after_error(policy, 1, "e", permanent=False)
    second = after_error(policy, 2, "e", permanent=False)
    assert (first.verdict, first.delay) == (Verdict.RETRY, 1.0)
    assert (second.verdict, second.delay) == (Verdict.RETRY, 3.0)
    third = after_error(policy, 3, "e", permanent=False)
    assert (third.verdict, third.reason) == (Verdict.DEAD_LETTER, "retries exhausted")


def test_a_permanent_failure_is_never_retried() -> None:
    outcome = after_error(RetryPolicy(max_retries=9), 1, "JobFailed: no", permanent=True)
    assert outcome.verdict is Verdict.FAILED


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"handler": ""}, "handler"),
        ({"handler": "has space"}, "handler"),
        ({"priority": 15}, "priority"),
        ({"priority": "urgent"}, "priority"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"retry_delay": -0.1}, "retry_delay"),
        ({"retry_backoff": 0}, "retry_backoff"),
        ({"delay": -5}, "delay"),
        ({"args": "abc"}, "args"),
        ({"args": ({1, 2},)}, "args"),
        ({"kwargs": {"when": object()}}, "kwargs"),
        ({"kwargs": {1: "x"}}, "kwargs"),
        ({"job_id": "has space"}, "job_id"),
        ({"job_id": "x" * 200}, "job_id"),
        ({"args": ("x" * 2000,), "max_payload": 1000}, "args"),
    ],
)
def test_bad_input_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    spec: dict[str, object] = {"handler": "h", **kwargs}
    with pytest.raises(InvalidJobError) as caught:
        new_job(**spec)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_records_leave_out_default_values() -> None:
    plain = new_job("h")
    assert plain.fields == ("handler", "h")
    custom = new_job("h", (1,), {"a": 1}, priority="low", timeout=None, max_retries=0)
    record = dict(zip(custom.fields[::2], custom.fields[1::2]))
    assert record == {"handler": "h", "args": "[1]", "kwargs": '{"a":1}', "priority": "0",
                      "timeout": "", "max_retries": "0"}  # fmt: skip
    job = definition(with_id(custom.id, {**record, "status": "PENDING"}))
    assert (job.timeout, job.max_retries, job.retry_delay, job.retry_backoff) == (None, 0, 1, 2)
    assert len(custom.id) == 16


def test_priorities_are_accepted_by_enum_number_or_name() -> None:
    assert parse_priority(JobPriority.HIGH) is JobPriority.HIGH
    assert parse_priority(30) is JobPriority.CRITICAL
    assert parse_priority("low") is JobPriority.LOW


def test_dates_in_args_travel_as_iso_strings_and_the_record_reads_back() -> None:
    job = new_job("backup", (dt.date(2026, 11, 28),), {"full": True}, priority="high", delay=2)
    record = dict(zip(job.fields[::2], job.fields[1::2]))
    assert record["args"] == '["2026-11-28"]' and job.delay_ms == 2000
    assert "id" not in record  # the key carries it
    back = definition(with_id(job.id, {**record, "status": "PENDING"}))
    assert back.id == job.id
    assert (back.args, back.kwargs) == (("2026-11-28",), {"full": True})
    assert back.priority is JobPriority.HIGH


def test_redis_older_than_6_2_is_refused_with_a_clear_message() -> None:
    check_version((6, 2, 0))
    check_version((7, 4, 1))
    with pytest.raises(RedisVersionError, match=r"Redis 6\.0\.16 is too old.*6\.2 or newer"):
        check_version((6, 0, 16))


def test_reconnecting_backs_off_from_a_tenth_of_a_second_to_five() -> None:
    assert [reconnect_delay(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert reconnect_delay(7) == reconnect_delay(10_000) == 5.0


def test_a_script_carries_only_the_prelude_definitions_it_needs() -> None:
    prelude = (
        "--[[ header ]]\nlocal A = 1\n-- b adds\nlocal function b(x)\n  return x + A\nend\n"
        "local function c()\n  return 0\nend\n"
    )
    source = with_prelude(prelude, "return b(2)")
    assert source.startswith("--[[ header ]]\n")
    assert "local A = 1" in source and "-- b adds\nlocal function b(x)" in source
    assert "local function c" not in source
    assert "local function bury" not in script("heartbeat").source
    assert "local function start_entry" in script("start").source


def test_generated_job_ids_never_start_with_a_dash_a_shell_would_take_for_an_option() -> None:
    ids = {new_job("h").id for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 16 and not i.startswith("-") for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_generates_an_id_its_parent_generates() -> None:
    new_job("h")  # the parent now holds a stock of fresh ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next 100 ids, then leave at once
        os.write(write, " ".join(new_job("h").id for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_job("h").id for _ in range(100)}
    assert len(child) == 100 and not child & parent


def test_the_payload_limit_counts_encoded_bytes_not_characters() -> None:
    # 300 000 characters of two bytes each: 600 000 bytes in Redis, over a 512 KiB limit.
    with pytest.raises(InvalidJobError, match=r"payload is 600\d{3} bytes, over the 524288-byte"):
        new_job("echo", ("é" * 300_000,))
    assert new_job("echo", ("é" * 200_000,)).id  # 400 000 bytes: within the limit


def test_a_traceback_keeps_where_the_error_was_raised_within_its_cap() -> None:
    from streamjobs._outcome import MAX_TRACEBACK, trace

    def deep(n: int, message: str) -> None:
        if n == 0:
            raise ValueError(message)
        deep(n - 1, message)

    try:
        deep(3, "at the bottom")
    except ValueError as exc:
        short = trace(exc)
    assert short.startswith("Traceback") and "in deep" in short
    assert short.endswith("ValueError: at the bottom\n")
    try:
        deep(3, "long " * 5000 + "end")
    except ValueError as exc:
        long = trace(exc)
    assert len(long) <= MAX_TRACEBACK + 4 and long.startswith("...\n")
    assert long.endswith("long end\n")
