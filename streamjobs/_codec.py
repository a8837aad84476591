"""Validation and encoding of jobs: pure code, no I/O.

A job record is a flat hash of strings that reads well in `redis-cli HGETALL`; args, kwargs and
results are JSON (orjson). Everything a submit could get wrong is caught here, before any write.
"""

from __future__ import annotations

import binascii
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import orjson

from .errors import InvalidJobError
from .models import JobDefinition, JobPriority, JobProgress, JobResult, JobStatus, timestamp

#: Record fields a job leaves out when they hold these values (a smaller record per job).
DEFAULTS = {
    "args": "[]", "kwargs": "{}", "priority": "10", "timeout": "300", "max_retries": "3",
    "retry_delay": "1", "retry_backoff": "2", "attempts": "0",
}  # fmt: skip

#: Enum members by the text a record holds: looked up, not converted, once per started job.
_PRIORITY = {str(int(p)): p for p in JobPriority}
_STATUS = {s.value: s for s in JobStatus}

#: Largest encoded args + kwargs accepted by default (bytes).
DEFAULT_MAX_PAYLOAD = 512 * 1024
_JOB_ID = re.compile(r"^[A-Za-z0-9_.:@/+=-]{1,128}$")
_HANDLER = re.compile(r"^\S{1,200}$")


class Dedupe(NamedTuple):
    """How a submission is deduplicated: by `key`, in `mode`, over `window_ms` (0: none)."""

    key: str
    mode: str
    window_ms: int


class NewJob(NamedTuple):
    """A validated submission, ready to be written by `enqueue.lua` (a named tuple: made
    once per submitted job, and cheaper to make than a frozen dataclass); one with `dedupe`
    goes through `enqueue_deduped.lua` instead."""

    id: str
    handler: str
    priority: JobPriority
    delay_ms: int
    fields: tuple[str, ...]
    dedupe: Dedupe | None = None
    #: The ids it waits for (written by `enqueue_dependent.lua`), and what it does when one
    #: of them ends without completing: "cancel" or "run".
    depends_on: tuple[str, ...] = ()
    on_dependency_failure: str = "cancel"
    limit_key: str | None = None  # a tenant: queued fairly by enqueue_fair.lua


#: Deduplication modes: the first job stands until it is done, or for the window whatever it
#: does; or each submit in the window replaces the waiting job and pushes its start back.
DEDUPE_MODES = ("until_done", "throttle", "debounce")
_DEDUPE_KEY_MAX = 200


def dedupe(key: object, window: object, mode: object, delay: object) -> Dedupe | None:
    """Check a submission's dedupe options (None when it has no dedupe_key); raises
    InvalidJobError naming the field."""
    if key is None:
        if window is not None or mode is not None:
            raise InvalidJobError("dedupe_key", "is required with dedupe_for or dedupe_mode")
        return None
    if not isinstance(key, str) or not key or len(key) > _DEDUPE_KEY_MAX:
        raise InvalidJobError(
            "dedupe_key", f"must be a non-empty string of at most {_DEDUPE_KEY_MAX} characters"
        )
    mode = "until_done" if mode is None else mode
    if mode not in DEDUPE_MODES:
        raise InvalidJobError("dedupe_mode", f"{mode!r} is not one of {', '.join(DEDUPE_MODES)}")
    seconds = _seconds("dedupe_for", window, allow_none=True, positive=True)
    if seconds is None and mode != "until_done":
        raise InvalidJobError("dedupe_for", f"is required with dedupe_mode={mode!r}")
    if mode == "debounce" and delay is not None:
        raise InvalidJobError("delay", "cannot go with dedupe_mode='debounce', which delays "
                              "the job by dedupe_for from the last submit")  # fmt: skip
    window_ms = 0 if seconds is None else max(1, int(seconds * 1000))
    return Dedupe(key, str(mode), window_ms)


def dumps(value: Any) -> str:
    """JSON text for a value (orjson: datetimes, dates and UUIDs become strings)."""
    return orjson.dumps(value).decode()


def parse_priority(value: object) -> JobPriority:
    """A JobPriority from the enum, its number, or its name ("high")."""
    if isinstance(value, JobPriority):
        return value
    try:
        if isinstance(value, str):
            return JobPriority[value.strip().upper()]
        if isinstance(value, int) and not isinstance(value, bool):
            return JobPriority(value)
    except (KeyError, ValueError):
        pass
    names = ", ".join(p.name.lower() for p in JobPriority)
    raise InvalidJobError("priority", f"{value!r} is not a priority (one of {names})")


def _seconds(name: str, value: object, *, allow_none: bool, positive: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidJobError(name, f"must be a finite number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise InvalidJobError(name, f"must be {'> 0' if positive else '>= 0'}, not {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidJobError(name, f"must be a whole number >= 0, not {value!r}")
    return value


def _payload(args: object, kwargs: object, limit: int) -> tuple[str, str]:
    if type(args) is not tuple and type(args) is not list:  # the common cases check nothing
        if isinstance(args, (str, bytes, Mapping)) or not isinstance(args, Iterable):
            raise InvalidJobError("args", f"must be a tuple or list, not {type(args).__name__}")
        args = list(args)
    no_kwargs = kwargs is None or (type(kwargs) is dict and not kwargs)
    if not no_kwargs and (
        not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs)
    ):
        raise InvalidJobError("kwargs", "must be a dict with string keys")
    args_json = _json("args", args) if args else "[]"
    kwargs_json = "{}" if no_kwargs else _json("kwargs", dict(kwargs))  # type: ignore[call-overload]
    size = _size(args_json) + _size(kwargs_json)
    if size > limit:
        raise InvalidJobError("args", f"payload is {size} bytes, over the {limit}-byte limit")
    return args_json, kwargs_json


def _size(text: str) -> int:
    """The UTF-8 length of JSON text in bytes, as Redis stores it (ASCII text, the common
    case, is known to be ASCII without a scan, so it is not encoded to be measured)."""
    return len(text) if text.isascii() else len(text.encode())


def _json(name: str, value: object) -> str:
    try:
        return dumps(value)
    except TypeError as exc:
        raise InvalidJobError(name, f"cannot be carried as JSON ({exc})") from None


#: Fresh ids, made 512 at a time: one urandom call and one encode serve many submits.
#: A forked child starts with none, so that it never hands out an id its parent holds.
_FRESH_IDS: list[str] = []
os.register_at_fork(after_in_child=_FRESH_IDS.clear)
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _fresh_id() -> str:
    """96 random bits in 16 URL-safe characters, never with a leading "-" (which a command
    line would take for an option)."""
    while True:
        try:
            return _FRESH_IDS.pop()
        except IndexError:  # empty (another thread may have taken the last): make more
            raw = binascii.b2a_base64(os.urandom(12 * 512), newline=False)
            text = raw.translate(_URLSAFE).decode()
            _FRESH_IDS.extend(text[i : i + 16] for i in range(0, len(text), 16) if text[i] != "-")


def fresh_id() -> str:
    """A fresh job id: never contains '.', so a `<p>.` put before it stays unambiguous."""
    return _fresh_id()


def _job_id(job_id: str | None) -> str:
    if job_id is None:
        return _fresh_id()
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise InvalidJobError(
            "job_id", f"{job_id!r} must be 1-128 letters, digits or _.:@/+=- characters"
        )
    return job_id


def new_job(
    handler: str,
    args: object = (),
    kwargs: object = None,
    *,
    priority: object = JobPriority.NORMAL,
    timeout: object = 300,
    max_retries: object = 3,
    retry_delay: object = 1.0,
    retry_backoff: object = 2.0,
    job_id: str | None = None,
    delay: object = None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    dedupe_key: object = None,
    dedupe_for: object = None,
    dedupe_mode: object = None,
    limit_key: object = None,
    depends_on: object = None,
    on_dependency_failure: object = None,
) -> NewJob:
    """Validate a submission and encode its record; raises InvalidJobError naming the field."""
    if depends_on is not None or on_dependency_failure is not None:
        job = new_job(
            handler, args, kwargs, priority=priority, timeout=timeout, max_retries=max_retries,
            retry_delay=retry_delay, retry_backoff=retry_backoff, job_id=job_id, delay=delay,
            max_payload=max_payload, dedupe_key=dedupe_key, dedupe_for=dedupe_for,
            dedupe_mode=dedupe_mode, limit_key=limit_key,
        )  # fmt: skip
        return dependent(job, depends_on, on_dependency_failure)
    deduped = (
        None if dedupe_key is dedupe_for is dedupe_mode is None  # the common case: no call
        else dedupe(dedupe_key, dedupe_for, dedupe_mode, delay)
    )  # fmt: skip
    if not isinstance(handler, str) or handler not in _GOOD_HANDLERS:
        if not isinstance(handler, str) or not _HANDLER.match(handler):
            raise InvalidJobError("handler", f"{handler!r} must be a non-empty name without spaces")
        if len(_GOOD_HANDLERS) < _CACHE_SIZE:
            _GOOD_HANDLERS.add(handler)
    options = (priority, timeout, max_retries, retry_delay, retry_backoff, delay)
    key = (*options, *map(type, options))  # types too: True == 1, but True is no count
    try:
        prio, option_fields, delay_ms = _OPTIONS[key]
    except KeyError:
        prio, option_fields, delay_ms = _OPTIONS.setdefault(key, _options(*options))
        if len(_OPTIONS) > _CACHE_SIZE:
            _OPTIONS.clear()
    except TypeError:  # an unhashable value: nothing to cache, but it is still checked
        prio, option_fields, delay_ms = _options(*options)
    args_json, kwargs_json = _payload(args, kwargs, max_payload)
    new_id = _job_id(job_id)
    fields = ["handler", handler]  # the id is in the key; defaults are left out
    if args_json != "[]":
        fields += ("args", args_json)
    if kwargs_json != "{}":
        fields += ("kwargs", kwargs_json)
    job = NewJob(new_id, handler, prio, delay_ms, (*fields, *option_fields), deduped)
    return job if limit_key is None else keyed(job, limit_key)


def keyed(job: NewJob, limit_key: object) -> NewJob:
    """`job` under a limit key (recorded as `limit_key`, queued fairly); InvalidJobError
    unless the key is a non-empty str without spaces."""
    if not isinstance(limit_key, str) or not _HANDLER.match(limit_key):
        raise InvalidJobError("limit_key", f"{limit_key!r} must be a non-empty name without spaces")
    return job._replace(fields=(*job.fields, "limit_key", limit_key), limit_key=limit_key)


#: What a dependent job may do when a dependency ends without completing.
DEPENDENCY_FAILURE = ("cancel", "run")
#: Most dependencies one job may have.
MAX_DEPENDENCIES = 10_000


def dependent(job: NewJob, depends_on: object, on_failure: object) -> NewJob:
    """`job` waiting for `depends_on` (job ids, duplicates dropped); raises InvalidJobError
    for a bad id list, a job depending on itself, a bad `on_dependency_failure`, or a
    dedupe_key (a deduplicated submit may return another job's id: it cannot wait)."""
    on_failure = "cancel" if on_failure is None else on_failure
    if on_failure not in DEPENDENCY_FAILURE:
        choices = ", ".join(DEPENDENCY_FAILURE)
        raise InvalidJobError("on_dependency_failure", f"{on_failure!r} is not one of {choices}")
    if depends_on is None:
        depends_on = ()
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, Iterable):
        raise InvalidJobError("depends_on", "must be a list of job ids")
    ids = tuple(dict.fromkeys(depends_on))
    if len(ids) > MAX_DEPENDENCIES:
        raise InvalidJobError("depends_on", f"has {len(ids)} ids, over {MAX_DEPENDENCIES}")
    for dep in ids:
        if not isinstance(dep, str) or not _JOB_ID.match(dep):
            raise InvalidJobError("depends_on", f"{dep!r} is not a job id")
    if job.id in ids:
        raise InvalidJobError("depends_on", f"job {job.id!r} cannot depend on itself")
    if job.dedupe is not None and ids:
        raise InvalidJobError("depends_on", "cannot go with dedupe_key")
    return job._replace(depends_on=ids, on_dependency_failure=str(on_failure))


#: Submissions mostly repeat a handful of handlers and option sets: each is checked and
#: encoded once, then looked up (a submit is then mostly its payload and its id).
_CACHE_SIZE = 1024
_GOOD_HANDLERS: set[str] = set()
_OPTIONS: dict[tuple[Any, ...], tuple[JobPriority, tuple[str, ...], int]] = {}


def _options(
    priority: object, timeout: object, max_retries: object, retry_delay: object,
    retry_backoff: object, delay: object,
) -> tuple[JobPriority, tuple[str, ...], int]:  # fmt: skip
    """The checked options of a submission: its priority, the record fields that differ from
    the defaults, and its delay in ms."""
    prio = parse_priority(priority)
    limit = _seconds("timeout", timeout, allow_none=True, positive=True)
    retries = _count("max_retries", max_retries)
    first_delay = _seconds("retry_delay", retry_delay, allow_none=False, positive=False)
    backoff = _seconds("retry_backoff", retry_backoff, allow_none=False, positive=True)
    wait = _seconds("delay", delay, allow_none=True, positive=False) or 0.0
    values = {
        "priority": str(int(prio)), "timeout": "" if limit is None else _num(limit),
        "max_retries": str(retries), "retry_delay": _num(first_delay or 0.0),
        "retry_backoff": _num(backoff or 1.0),
    }  # fmt: skip
    fields: list[str] = []
    for name, value in values.items():
        if value != DEFAULTS[name]:
            fields += (name, value)
    return prio, tuple(fields), int(wait * 1000)


#: Gives a new job its id from (job_id, partition_key, dedupe_key): see `RedisJobQueue.place`.
#: and the ids it depends on (it joins their partition).
Place = Callable[[Any, Any, Any, Any], "str | None"]


def new_jobs(
    specs: Iterable[Mapping[str, Any]], max_payload: int, place: Place | None = None,
    every: bool = False,
) -> list[NewJob]:  # fmt: skip
    """Validate a bulk submission whole: each mapping takes new_job's keywords (`handler`
    included, and `partition_key`); the first bad one raises, naming its index
    (`jobs[3].timeout: ...`). `place` gives a job its id from its job_id and partition_key:
    for every job when `every` (many partitions), else only where a partition_key is given
    (one partition: checked, then ignored), so a plain bulk submit does no more than before."""
    jobs = []
    for i, spec in enumerate(specs):
        if unknown := spec.keys() - _SUBMIT_KEYWORDS:
            raise InvalidJobError(f"jobs[{i}].{min(unknown)}", "is not a submit_job keyword")
        if "handler" not in spec:
            raise InvalidJobError(f"jobs[{i}].handler", "is required")
        try:
            if place is not None and (every or "partition_key" in spec or "depends_on" in spec):
                spec = dict(spec)
                key = spec.pop("partition_key", None)
                tenant = spec.get("limit_key")  # a limit holds in one partition: its key's
                if tenant and isinstance(tenant, str) and not spec.get("job_id"):
                    key = key if spec.get("depends_on") else tenant
                spec["job_id"] = place(
                    spec.get("job_id"), key, spec.get("dedupe_key"), spec.get("depends_on")
                )
            jobs.append(new_job(**spec, max_payload=max_payload))
        except InvalidJobError as exc:
            raise InvalidJobError(f"jobs[{i}].{exc.field}", str(exc).split(": ", 1)[1]) from None
    return jobs


_SUBMIT_KEYWORDS = frozenset(
    {"handler", "args", "kwargs", "priority", "timeout", "max_retries", "retry_delay",
     "retry_backoff", "job_id", "delay", "dedupe_key", "dedupe_for", "dedupe_mode",
     "partition_key", "limit_key", "depends_on", "on_dependency_failure"}
)  # fmt: skip


def dead_letter(entry: str, fields: Mapping[str, str]) -> JobDefinition:
    """A dead-letter stream entry as a JobDefinition; a foreign entry (not a job of ours)
    keeps its raw fields in kwargs."""
    try:
        if not fields.get("id"):
            raise ValueError("not a job of ours")
        job = definition({**fields, "status": JobStatus.DEAD_LETTER.value})
    except (ValueError, KeyError, TypeError):
        raw = {k: v for k, v in fields.items() if k.startswith("raw")}
        job = JobDefinition(id=fields.get("id") or entry, handler=fields.get("handler", ""),
                            kwargs=raw, status=JobStatus.DEAD_LETTER)  # fmt: skip
    job.error = fields.get("error") or None
    return job


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """A flat field, value, field, value ... reply (HGETALL, a stream entry) as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def with_id(job_id: str, record: dict[str, str]) -> dict[str, str]:
    """A job's record as read from its hash, with the id its key carries ({} stays {})."""
    if record:
        record["id"] = job_id
    return record


def definition(record: Mapping[str, str]) -> JobDefinition:
    """A JobDefinition from a job record (see with_id) or a dead-letter entry; raises
    ValueError if corrupt. Runs once per job a worker starts, so it looks up rather than
    converts wherever it can."""
    get, default = record.get, DEFAULTS
    args = orjson.loads(get("args", default["args"]))
    kwargs = orjson.loads(get("kwargs", default["kwargs"]))
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("args must be a JSON list and kwargs a JSON object")
    priority = get("priority", default["priority"]) or "10"
    status = get("status") or "PENDING"
    return JobDefinition(
        id=record["id"],
        handler=record["handler"],
        args=tuple(args),
        kwargs=kwargs,
        priority=_PRIORITY.get(priority) or JobPriority(int(priority)),
        timeout=_float(get("timeout", default["timeout"])),
        max_retries=int(get("max_retries", default["max_retries"]) or 0),
        retry_delay=float(get("retry_delay", default["retry_delay"]) or 0),
        retry_backoff=float(get("retry_backoff", default["retry_backoff"]) or 1),
        attempts=int(get("attempts", default["attempts"]) or 0),
        status=_STATUS.get(status) or JobStatus(status),
        created_at=timestamp(_int(get("created_at"))),
        error=get("error") or None,
        dependency_results=dependency_results(record) if "depends_on" in record else {},
    )


def dependency_results(record: Mapping[str, str]) -> dict[str, Any]:
    """The results a dependent job's record holds (copied in by the script that completed
    each dependency), by dependency id; None for one that ended without a result."""
    found: dict[str, Any] = {}
    for dep in record["depends_on"].split(","):
        raw = record.get(f"dep:{dep}")
        found[dep] = orjson.loads(raw) if raw else None
    return found


def progress_fields(current: object, total: object, message: object) -> tuple[str, str, str]:
    """Reported progress as the record stores it ('' for None); a current or total that is
    not a finite number raises TypeError, which the handler that reported it sees."""
    numbers = []
    for name, value in (("current", current), ("total", total)):
        if value is None:
            numbers.append("")
            continue
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise TypeError(f"progress {name} must be a finite number or None, not {value!r}")
        numbers.append(_num(number))
    return numbers[0], numbers[1], "" if message is None else str(message)


def progress(record: Mapping[str, str]) -> JobProgress | None:
    """The last progress a job reported, or None when it reported none; a number that does
    not parse (a record written by hand or by an older version) reads as None."""
    if "progress_at" not in record:
        return None
    message = record.get("progress_message") or None
    return JobProgress(_lenient_float(record.get("progress_current")),
                       _lenient_float(record.get("progress_total")), message)  # fmt: skip


def _lenient_float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def result(record: Mapping[str, str]) -> JobResult | None:
    """A JobResult from a job hash, or None while the job is not terminal."""
    status = JobStatus(record["status"])
    if not status.is_terminal:
        return None
    started, finished = _int(record.get("started_at")), _int(record.get("finished_at"))
    duration = (finished - started) / 1000 if started and finished else None
    raw = record.get("result")
    return JobResult(
        job_id=record["id"],
        status=status,
        result=orjson.loads(raw) if raw else None,
        error=record.get("error") or None,
        attempts=int(record.get("attempts") or 0),
        duration=duration,
        created_at=timestamp(_int(record.get("created_at"))),
        started_at=timestamp(started),
        finished_at=timestamp(finished),
    )
