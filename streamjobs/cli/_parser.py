"""The command line: every subcommand, its options and its help, in one place."""

from __future__ import annotations

import argparse
from typing import NoReturn

from .._drivers import DRIVERS
from ._inspect import WINDOW_S

PRIORITIES = ("critical", "high", "normal", "low")
BACKENDS = ("asyncio", "trio")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other failure (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"streamjobs: error: {message} (see: {self.prog} --help)\n")


def _connection() -> _Parser:
    """--redis-url / --queue / --key-prefix, shared by the commands that only talk to Redis."""
    p = _Parser(add_help=False)
    p.add_argument(
        "--redis-url",
        default=None,
        help="Redis to use (default: $REDIS_URL, then redis://localhost:6379/0)",
    )
    p.add_argument("--queue", default="default", help="queue name (default: default)")
    p.add_argument("--key-prefix", default="streamjobs:", help="key prefix (default: streamjobs:)")
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="the queue's partition count (default: the count recorded in Redis, "
                   "else 1); a count other than the recorded one is refused")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    _wait_replicas(p)
    return p


def _wait_replicas(p: argparse.ArgumentParser, default: str = "0 (no wait)") -> None:
    p.add_argument("--wait-replicas", type=int, default=None, metavar="N",
                   help="each change returns once N replicas hold it (WAIT), else fails "
                   f"(default: {default})")  # fmt: skip


def _worker(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("worker", help="run worker processes for an app's handlers",
                       description="Run jobs with the handlers of APP (MODULE:ATTR, a JobService "
                       "or a zero-argument factory returning one). SIGTERM or SIGINT: finish "
                       "running jobs within --grace, hand the rest back, exit 0; a second "
                       "SIGINT stops at once.")  # fmt: skip
    p.add_argument("app", metavar="MODULE:ATTR")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs at once per process (default: $JOB_WORKER_COUNT, then CPUs)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes; above 1 a supervisor restarts any that dies",
    )
    p.add_argument("--redis-url", default=None, help="Redis to use instead of the app's")
    p.add_argument("--queue", default=None, help="queue name instead of the app's")
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="partition count instead of the app's (default: the app's, else the "
                   "count recorded in Redis)")  # fmt: skip
    p.add_argument("--burst", action="store_true",
                   help="exit 0 once nothing is pending, running or waiting to retry "
                   "(jobs scheduled for later are not waited for)")  # fmt: skip
    p.add_argument("--lease", type=float, default=None,
                   help="seconds a running job's lease lasts; a killed worker's job is taken "
                   "over once it lapses (default: the app's, 5)")  # fmt: skip
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds running jobs get to finish on SIGTERM (default: no limit)",
    )
    p.add_argument(
        "--backend",
        default="asyncio",
        choices=BACKENDS,
        help="event loop to run on (default: asyncio; trio needs the trio extra)",
    )
    p.add_argument("--driver", default=None, choices=DRIVERS,
                   help="Redis client (default: the app's, else resp on asyncio, coredis on "
                   "trio)")  # fmt: skip
    _wait_replicas(p, "the app's")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve this process's job counters and histograms to Prometheus at "
                   "/metrics on this port (needs the prometheus extra; one process)")  # fmt: skip
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address --metrics-port binds (default: 127.0.0.1)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.set_defaults(command="worker")


def _inspection(sub: argparse._SubParsersAction[_Parser]) -> None:
    conn = _connection()
    sub.add_parser("info", parents=[conn], help="queue depth, workers and recent throughput",
                   description="Pending jobs per priority, running, scheduled, waiting to retry, "
                   "dead letters, worker processes with their health, and the jobs completed "
                   f"and failed in the last {WINDOW_S} s, counted from the events stream "
                   "(job.completed / job.failed entries by entry-id time; failed includes "
                   "dead-lettered).").set_defaults(command="info")  # fmt: skip
    sub.add_parser("workers", parents=[conn], help="every worker and its health",
                   ).set_defaults(command="workers")  # fmt: skip
    jobs = sub.add_parser("jobs", help="look at one job").add_subparsers(required=True)
    show = jobs.add_parser("show", parents=[conn], help="a job's record, attempts, progress, error")
    show.add_argument("job_id", metavar="ID")
    show.set_defaults(command="jobs show")
    cancel = jobs.add_parser("cancel", parents=[conn], help="cancel a job, running or not",
                             description="Cancel a job: one not started never runs; a running "
                             "one ends CANCELLED and its worker stops it within a second. "
                             "Exits 1 when the job is finished or unknown.")  # fmt: skip
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(command="jobs cancel")
    events = sub.add_parser("events", parents=[conn], help="the events stream (--follow: live)")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--count", "-n", type=int, default=20, help="recent events shown first")
    events.set_defaults(command="events")


def _dead_letters(sub: argparse._SubParsersAction[_Parser]) -> None:
    conn = _connection()
    dead = sub.add_parser("dead-letters", help="list, retry or purge dead letters")
    actions = dead.add_subparsers(required=True)
    lst = actions.add_parser("list", parents=[conn], help="the newest dead letters")
    lst.add_argument("--limit", type=int, default=100, help="how many (default 100)")
    lst.set_defaults(command="dead-letters list")
    retry = actions.add_parser("retry", parents=[conn], help="queue dead letters again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", metavar="ID", nargs="?", help="one dead letter")
    which.add_argument("--all", action="store_true", help="every dead letter")
    retry.set_defaults(command="dead-letters retry")
    purge = actions.add_parser("purge", parents=[conn], help="delete every dead letter")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(command="dead-letters purge")


def _schedules(sub: argparse._SubParsersAction[_Parser]) -> None:
    conn = _connection()
    p = sub.add_parser("schedules", help="list, pause, resume, trigger or remove schedules")
    actions = p.add_subparsers(required=True)
    actions.add_parser("list", parents=[conn], help="every schedule with its next five fire "
                       "times").set_defaults(command="schedules list")  # fmt: skip
    for action, text in (
        ("pause", "stop a schedule firing until resumed"),
        ("resume", "fire a paused schedule again from its next tick"),
        ("trigger", "queue one run of a schedule now"),
        ("remove", "delete a schedule (runs already queued stay)"),
    ):
        one = actions.add_parser(action, parents=[conn], help=text)
        one.add_argument("name", metavar="NAME")
        one.set_defaults(command=f"schedules {action}")


def _limits(sub: argparse._SubParsersAction[_Parser]) -> None:
    conn = _connection()
    p = sub.add_parser("limits", help="set, list or remove limits per limit key",
                       description="A limit key is a job's limit_key, else its handler's name. "
                       "Limits hold across every pool and process; a job without room waits "
                       "outside the streams until its key has room.")  # fmt: skip
    actions = p.add_subparsers(required=True)
    put = actions.add_parser("set", parents=[conn], help="set (or replace) a key's limit")
    put.add_argument("key", metavar="KEY")
    put.add_argument("--concurrency", type=int, default=None, metavar="N",
                     help="most of the key's jobs running at once")  # fmt: skip
    put.add_argument("--rate", default=None, metavar="R",
                     help="most starts per second, minute or hour: 100/s, 600/m, 10000/h")
    put.set_defaults(command="limits set")
    actions.add_parser("list", parents=[conn], help="every limit, its running and waiting jobs "
                       "and what holds them back").set_defaults(command="limits list")  # fmt: skip
    drop = actions.add_parser("remove", parents=[conn], help="drop a key's limit; its waiting "
                              "jobs are queued at once")  # fmt: skip
    drop.add_argument("key", metavar="KEY")
    drop.set_defaults(command="limits remove")


def _submit(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("submit", parents=[_connection()], help="queue a job")
    p.add_argument("handler", metavar="HANDLER")
    p.add_argument("--args", default=None, help="positional arguments, a JSON array")
    p.add_argument("--kwargs", default=None, help="keyword arguments, a JSON object")
    p.add_argument("--priority", default="normal", type=str.lower, choices=PRIORITIES)
    p.add_argument("--timeout", type=float, default=300, help="seconds (default 300)")
    p.add_argument("--max-retries", type=int, default=3, help="retries after the first attempt")
    p.add_argument("--delay", type=float, default=None, help="run no sooner than this (seconds)")
    p.add_argument("--job-id", default=None, help="an id of your own: submitting is idempotent")
    p.add_argument("--dedupe-key", default=None,
                   help="queue nothing while this key's job stands for it; prints its id")
    p.add_argument("--dedupe-for", type=float, default=None,
                   help="the dedupe window in seconds (needed by throttle and debounce)")
    p.add_argument("--dedupe-mode", default=None, choices=("until_done", "throttle", "debounce"),
                   help="until_done (default), throttle or debounce")  # fmt: skip
    p.add_argument("--partition-key", default=None,
                   help="jobs with the same key share a partition (not with --job-id)")  # fmt: skip
    p.add_argument("--limit-key", default=None,
                   help="the limit the job counts against, and its tenant for fair turns "
                   "(default: its handler's name, no turns)")  # fmt: skip
    p.set_defaults(command="submit")


def _metrics(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("metrics", parents=[_connection()], help="serve the queue's gauges to "
                       "Prometheus", description="Serve the queue's gauges at /metrics, read "
                       "from Redis in one script call per scrape, until SIGTERM or SIGINT. "
                       "Needs the prometheus extra.")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=9808, help="port to serve on (default: 9808)")
    p.set_defaults(command="metrics")


def _web(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("web", parents=[_connection()], help="serve the web dashboard",
                       description="Serve the queue's dashboard (needs the web extra). Every "
                       "number is read from Redis, so any number of dashboards agree.")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    p.add_argument("--read-only", action="store_true", help="refuse every action (403)")
    p.add_argument("--basic-auth", metavar="USER:PASS", default=None,
                   help="ask for these credentials on every page")  # fmt: skip
    p.set_defaults(command="web")


def build() -> argparse.ArgumentParser:
    """The `streamjobs` parser."""
    parser = _Parser(
        prog="streamjobs", description="Run and inspect streamjobs queues on Redis Streams."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for add in (
        _worker, _inspection, _dead_letters, _schedules, _limits, _submit, _metrics, _web,
    ):
        add(sub)
    return parser
