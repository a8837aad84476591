"""The dashboard as an ASGI app: pages, their live fragments, and the actions.

Every number comes from Redis at request time and every action is the same Lua transition
the CLI runs, so any number of dashboard processes show and do the same thing.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from .._drivers.sentinel import is_sentinel, redis_py_async
from .._metrics import metrics_from, workers_from
from .._replies import gather
from ..async_worker import Timings
from ..errors import ConfigurationError
from ..redis_queue import RedisJobQueue
from ..service import JobService
from . import _data, _paging, _security
from ._data import Reader

HERE = Path(__file__).resolve().parent
#: Dead letters retried or purged per step of a bulk action.
BATCH = 500

Handler = Callable[[Request], Awaitable[Response]]


class _State:
    """What every request of one app shares: the queue, its reads, the options."""

    def __init__(self, queue: RedisJobQueue, owned: bool, read_only: bool, secret: str | None,
                 user_of: Callable[[Request], str] | None) -> None:  # fmt: skip
        self.queue, self.owned, self.read_only = queue, owned, read_only
        self.svc = JobService(queue=queue, timings=Timings())
        self.timings = self.svc.worker_pool.timings
        self.secret = secret or ""
        self.user_of = user_of
        self.client: Any = None
        self._also_close: list[Any] = []  # what the client leans on (a sentinel manager)
        self.reader: Reader | None = None
        self._lock = anyio.Lock()

    async def ensure_started(self) -> None:
        """Start on the first request: a host app's Mount does not run a sub-app's lifespan."""
        if self.reader is None:
            async with self._lock:
                if self.reader is None:
                    await self.start()

    async def start(self) -> None:
        """Connect, and adopt the queue's CSRF secret (proposing one when none is kept): one
        key, in the first partition, for every partition count."""
        await self.queue.connect()
        self.client, self._also_close = _reader_client(self.queue)
        self.reader = Reader(self.queue, self.client)
        if not self.secret:
            proposed = secrets.token_hex(32)
            self.secret = await self.reader.run(
                "dashboard_secret", proposed, extra=self.queue.keys.dashboard_secret
            )

    async def stop(self) -> None:
        """Close the connections this app opened."""
        client, self.client, self.reader = self.client, None, None
        if client is not None:
            await client.aclose()
        also, self._also_close = self._also_close, []
        for other in also:
            await other.aclose()
        if self.owned:
            await self.queue.close()

    @property
    def read(self) -> Reader:
        if self.reader is None:
            raise ConfigurationError("the dashboard is not started (its lifespan did not run)")
        return self.reader


def _reader_client(queue: RedisJobQueue) -> tuple[Any, list[Any]]:
    """The dashboard's own client for its reads, for the Redis the queue found at connect: a
    cluster client on a cluster, the primary the sentinels name behind a sentinel URL, else
    one connection pool (every read names keys of one partition, so none crosses slots);
    with what else must be closed after it."""
    url = queue.redis_url
    if (queue.topology or "").startswith("Redis Cluster"):
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, decode_responses=True), []
    if is_sentinel(url):
        manager, client, blocking = redis_py_async(url, max_connections=16, socket_timeout=15.0,
                                                   decode_responses=True)  # fmt: skip
        return client, [blocking, manager]
    return Redis.from_url(url, decode_responses=True), []


def _queue_of(target: str | RedisJobQueue | JobService | None, key_prefix: str,
              name: str, partitions: int | None) -> tuple[RedisJobQueue, bool]:  # fmt: skip
    if isinstance(target, JobService):
        return target.queue, False
    if isinstance(target, RedisJobQueue):
        return target, False
    return RedisJobQueue(target, key_prefix, name=name, partitions=partitions), True


class Dashboard:
    """The dashboard's ASGI app. It connects on its first request; served alone, its lifespan
    closes it, and mounted under a host app (whose Mount runs no sub-app lifespan) the host
    calls `await dashboard.aclose()` at its own shutdown."""

    def __init__(self, app: ASGIApp, state: _State) -> None:
        self.app, self._state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._state.ensure_started()
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        """Close the connections the dashboard opened (it reconnects if asked again)."""
        await self._state.stop()


class _BasicAuth:
    """HTTP basic auth in front of every path; the user is kept for the action log."""

    def __init__(self, app: ASGIApp, credentials: tuple[str, str]) -> None:
        self.app, self.credentials = app, credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        user = _security.basic_user(header, self.credentials)
        if user is None:
            response = PlainTextResponse(
                "authentication required", 401,
                headers={"WWW-Authenticate": 'Basic realm="streamjobs", charset="UTF-8"'},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["streamjobs_user"] = user
        await self.app(scope, receive, send)


def create_app(
    queue_or_url: str | RedisJobQueue | JobService | None = None,
    *,
    read_only: bool = False,
    basic_auth: str | tuple[str, str] | None = None,
    secret: str | None = None,
    key_prefix: str = "streamjobs:",
    name: str = "default",
    user_of: Callable[[Request], str] | None = None,
    partitions: int | None = None,
) -> Dashboard:
    """The dashboard of one queue as an ASGI app, to serve or mount under a host app.

    `queue_or_url`: a Redis URL (None: $REDIS_URL, then localhost) with `key_prefix` and
    `name`, or a queue or service of the host app's. `read_only` refuses every action with
    403 and hides their buttons. `basic_auth` (`USER:PASS`) guards every path; a host app
    with its own auth passes `user_of` to name who acted in the events stream. `secret`
    signs CSRF tokens; by default one is kept in Redis and shared by every dashboard process.
    """
    credentials = _security.parse_basic_auth(basic_auth)
    queue, owned = _queue_of(queue_or_url, key_prefix, name, partitions)
    state = _State(queue, owned, read_only, secret, user_of)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["ms"] = _data.fmt_ms
    templates.env.filters["json"] = _data.dumps
    pages = _Pages(state, templates)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    routes = [
        Route("/", pages.overview),
        Route("/jobs", pages.jobs),
        Route("/jobs/{job_id:path}/cancel", pages.action(pages.cancel), methods=["POST"]),
        Route("/jobs/{job_id:path}/retry", pages.action(pages.retry), methods=["POST"]),
        Route("/jobs/{job_id:path}", pages.job),
        Route("/dead-letters", pages.dead_letters),
        Route("/dead-letters/retry", pages.action(pages.retry_selected), methods=["POST"]),
        Route("/dead-letters/retry-all", pages.action(pages.retry_all), methods=["POST"]),
        Route("/dead-letters/purge", pages.action(pages.purge), methods=["POST"]),
        Route("/workers", pages.workers),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app: ASGIApp = Starlette(routes=routes, lifespan=lifespan)
    if credentials is not None:
        app = _BasicAuth(app, credentials)
    return Dashboard(app, state)


class _Pages:
    """The endpoints."""

    def __init__(self, state: _State, templates: Jinja2Templates) -> None:
        self.s, self.templates = state, templates

    # -- rendering -----------------------------------------------------------------------

    def render(self, request: Request, name: str, context: dict[str, Any]) -> Response:
        """A page or fragment, with the CSRF token (a fresh cookie when it lacks a good one)."""
        cookie = request.cookies.get(_security.COOKIE)
        token = cookie if _security.valid(self.s.secret, cookie, cookie) else None
        fresh = token is None
        token = token or _security.new_token(self.s.secret)
        base = request.scope.get("root_path", "")
        response = self.templates.TemplateResponse(request, name, {
            **context, "base": base, "csrf": token, "csrf_field": _security.FIELD,
            "read_only": self.s.read_only, "queue": self.s.queue.keys.name,
            "partial": request.query_params.get("partial") == "1",
        })  # fmt: skip
        if fresh:
            response.set_cookie(_security.COOKIE, token, httponly=True, samesite="strict",
                                path=base or "/")  # fmt: skip
        return response

    async def snapshot(self) -> list[Any]:
        return await self.s.queue.snapshot(self.s.timings.registry_ttl)

    # -- pages ---------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        snapshot = await self.snapshot()
        metrics = metrics_from(snapshot, self.s.timings)
        view = await self.s.read.overview(metrics)
        return self.render(request, "overview.html", {
            "o": view, "bars": _bars(view.chart), "limit": _data.BREAKDOWN_LIMIT,
        })  # fmt: skip

    async def jobs(self, request: Request) -> Response:
        q = request.query_params
        wanted = q.get("id", "").strip()
        if wanted and await self.s.read.job(wanted, with_events=False) is not None:
            base = request.scope.get("root_path", "")
            return RedirectResponse(f"{base}/jobs/{quote(wanted, safe='/')}", 303)
        status, handler, cursor = (
            q.get("status", "recent"),
            q.get("handler", ""),
            q.get("cursor", ""),
        )
        if status not in _data.STATUSES:
            return PlainTextResponse(f"no such status {status!r}: one of {_data.STATUSES}", 400)
        if not _paging.valid_cursor(status, cursor, self.s.queue.partition_count):
            return PlainTextResponse(f"bad cursor {cursor!r}: use the page's own links", 400)
        page = await self.s.read.page(status, handler.strip(), cursor)
        return self.render(request, "jobs.html", {
            "page": page, "status": status, "handler": handler, "statuses": _data.STATUSES,
            "missing": wanted,
        })  # fmt: skip

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        partial = request.query_params.get("partial") == "1"
        view = await self.s.read.job(job_id, with_events=not partial)
        if view is None:
            return self.render(request, "missing.html", {"job_id": job_id})
        return self.render(request, "job.html", {"v": view, "job_id": job_id})

    async def dead_letters(self, request: Request) -> Response:
        cursor = request.query_params.get("cursor", "")
        if not _paging.valid_cursor("dead_letter", cursor, self.s.queue.partition_count):
            return PlainTextResponse(f"bad cursor {cursor!r}: use the page's own links", 400)
        rows, after = await self.s.read.dead_letters(cursor)
        count = await self.s.read.dead_letter_count()
        return self.render(request, "dead_letters.html",
                           {"rows": rows, "next_cursor": after, "count": count})  # fmt: skip

    async def workers(self, request: Request) -> Response:
        snapshot = await self.snapshot()
        now_s = int(snapshot[4]) / 1000
        pools: dict[str, dict[str, Any]] = {}
        for w in workers_from(snapshot, self.s.timings):
            pool = pools.setdefault(w.pool, {
                "pool": w.pool, "host": w.host, "pid": w.pid, "busy": 0, "idle": 0, "done": 0,
                "failed": 0, "lag": w.loop_lag, "age": max(0.0, now_s - w.last_heartbeat),
                "healthy": w.healthy,
            })  # fmt: skip
            pool["busy" if w.status == "busy" else "idle"] += 1
            pool["done"] += w.jobs_completed
            pool["failed"] += w.jobs_failed
        return self.render(request, "workers.html", {"pools": list(pools.values())})

    # -- actions -------------------------------------------------------------------------

    def action(self, run: Callable[[Request, Any], Awaitable[tuple[str, str, str]]]) -> Handler:
        """Wrap an action: 403 when read-only or without a good CSRF token; then run it,
        log who did it in the events stream, and go back to the page it came from."""

        async def endpoint(request: Request) -> Response:
            if self.s.read_only:
                return PlainTextResponse("read-only dashboard: actions are disabled", 403)
            form = await request.form()
            sent = form.get(_security.FIELD) or request.headers.get(_security.HEADER)
            cookie = request.cookies.get(_security.COOKIE)
            if not _security.valid(self.s.secret, cookie, sent if isinstance(sent, str) else None):
                return PlainTextResponse("missing or bad CSRF token", 403)
            what, job_id, outcome = await run(request, form)
            # logged in the partition of the one job acted on (so its timeline shows it);
            # an action on several, or on the whole queue, in the first partition
            one = what in ("cancel", "retry") or len([i for i in form.getlist("id") if i]) == 1
            keys = self.s.queue.keys_of(job_id) if one else self.s.queue.keys
            await self.s.read.run("record_action", self.user(request), what, job_id, outcome,
                                  keys=keys)  # fmt: skip
            return RedirectResponse(_back(request, form.get("next")), 303)

        return endpoint

    def user(self, request: Request) -> str:
        """Who acts: the host app's word, else the basic-auth user, else anonymous."""
        if self.s.user_of is not None:
            return self.s.user_of(request)
        return str(request.scope.get("state", {}).get("streamjobs_user") or "anonymous")

    async def cancel(self, request: Request, form: Any) -> tuple[str, str, str]:
        job_id = request.path_params["job_id"]
        outcome = await self.s.svc.cancel_job(job_id)  # running jobs too: their worker stops them
        return "cancel", job_id, str(outcome).lower()

    async def retry(self, request: Request, form: Any) -> tuple[str, str, str]:
        job_id = request.path_params["job_id"]
        done = await self.s.svc.retry_dead_letter(job_id)
        return "retry", job_id, "queued again" if done else "not a dead letter"

    async def retry_selected(self, request: Request, form: Any) -> tuple[str, str, str]:
        ids = [str(i) for i in form.getlist("id") if str(i)]
        done = await self.retry_each(ids)
        return "retry selected", ",".join(ids)[:500], f"{done} of {len(ids)} queued again"

    async def retry_each(self, ids: list[str]) -> int:
        """Retry dead letters, one by one within a partition, the partitions together; how
        many went back to their queue."""

        async def retry(at: list[int]) -> int:
            done = 0
            for i in at:
                done += await self.s.svc.retry_dead_letter(ids[i])
            return done

        groups = self.s.queue.by_partition(ids).values()
        return sum(await gather([partial(retry, at) for at in groups])) if ids else 0

    async def retry_all(self, request: Request, form: Any) -> tuple[str, str, str]:
        done = seen = 0
        kept = self.s.queue.max_dead_letters * self.s.queue.partition_count  # each keeps its own
        for _ in range(kept // BATCH + 1):
            dead = await self.s.svc.get_dead_letters(BATCH)
            step = await self.retry_each([job.id for job in dead])
            done, seen = done + step, seen + len(dead)
            if step == 0:
                break
        return "retry all", "", f"{done} of {seen} queued again"

    async def purge(self, request: Request, form: Any) -> tuple[str, str, str]:
        purged, left = 0, -1
        while left != 0:
            step, left = await self.s.svc.purge_dead_letters(BATCH)
            purged += step
            if step == 0:
                break
        return "purge dead letters", "", f"{purged} purged"


def _back(request: Request, target: Any) -> str:
    """Where an action returns to: a path of this app named by the form, else the overview."""
    base = request.scope.get("root_path", "")
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return f"{base}{target}"
    return f"{base}/"


def _bars(chart: list[tuple[int, int | None, int | None]]) -> dict[str, Any]:
    """The throughput chart's bars in SVG units: 60 slots, completed over failed."""
    width, height = 600, 80
    slot = width / max(1, len(chart))
    top = max([(c or 0) + (f or 0) for _, c, f in chart] + [1])
    bars = []
    for i, (minute, completed, failed) in enumerate(chart):
        c, f = completed or 0, failed or 0
        hc, hf = height * c / top, height * f / top
        bars.append({
            "x": round(i * slot + 1, 1), "w": round(slot - 2, 1), "minute": minute,
            "yc": round(height - hc, 1), "hc": round(hc, 1),
            "yf": round(height - hc - hf, 1), "hf": round(hf, 1),
            "completed": completed, "failed": failed,
        })  # fmt: skip
    return {"width": width, "height": height, "bars": bars, "top": top}
