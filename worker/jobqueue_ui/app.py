"""The web UI and JSON admin API, one ASGI app (Starlette): server-rendered pages with a
little same-origin JavaScript, and ``/api/...`` answering JSON, both on the core's job
control (``jobqueue.Queue``); the UI adds no queue logic of its own.

Pages: ``/queues`` (live), ``/jobs`` (filter, keyset pages, select), ``/jobs/{id}``,
``/schedules``, ``/audit``; actions go through ``/actions/confirm`` (what it will touch, and
how many) then ``/actions/apply``. API: ``GET /api/queues|workers|jobs|jobs/count|jobs/{id}|
schedules|audit``, ``POST /api/jobs/retry|cancel|delete``, ``POST /api/queues/{name}/pause|
resume``. ``/healthz`` answers without credentials.

Every answer carries security headers (a CSP allowing only this origin's scripts and styles,
no framing, no sniffing, no referrer, no caching) and ``Server-Timing``. Every request but
``/healthz`` and static files needs an identity (``access``); every action the admin role,
its CSRF token when the credentials are ambient, and an entry in the audit trail.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextlib
import dataclasses
import datetime
import json
import logging
import pathlib
import time
import typing
import urllib.parse
import uuid

import jinja2
import psycopg
import starlette.applications
import starlette.datastructures
import starlette.requests
import starlette.responses
import starlette.routing
import starlette.staticfiles
import starlette.types

import jobqueue
from jobqueue_ui import access, filters, redaction

logger = logging.getLogger("jobqueue.ui")

HERE: typing.Final = pathlib.Path(__file__).parent
RATE_WINDOW: typing.Final = 60.0  # seconds of readings a throughput is measured over
COUNT_LIMIT: typing.Final = 10_000
MAX_RECONNECT_DELAY: typing.Final = 30.0
SECURITY_HEADERS: typing.Final = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class Action(typing.NamedTuple):
    """An action on jobs: what it is called, the statuses it can change, its past tense."""

    name: str
    statuses: tuple[str, ...]
    done: str

    def narrow(self, job_filter: jobqueue.JobFilter) -> jobqueue.JobFilter | None:
        """``job_filter`` kept to the statuses this action changes; ``None`` when it names
        none of them."""
        statuses = [s for s in self.statuses if not job_filter.statuses or s in job_filter.statuses]
        return dataclasses.replace(job_filter, statuses=statuses) if statuses else None


JOB_ACTIONS: typing.Final = {
    "retry": Action("retry", ("failed", "cancelled"), "retried"),
    "cancel": Action("cancel", ("pending", "running"), "cancelled"),
    "delete": Action("delete", ("done", "failed", "cancelled"), "deleted"),
}
QUEUE_ACTIONS: typing.Final = ("pause", "resume")


@dataclasses.dataclass(frozen=True)
class Config:
    database_url: str | None
    host: str
    admin_token: str | None
    viewer_token: str | None
    redact: collections.abc.Sequence[str] = ()
    query_timeout: float = 5.0
    page_size: int = 50


_Answer = typing.TypeVar("_Answer")
Handler: typing.TypeAlias = collections.abc.Callable[
    [starlette.requests.Request, access.Identity], collections.abc.Awaitable[_Answer]
]
"""An endpoint's work, once the request's identity is known: a page or a JSON answer."""
Endpoint: typing.TypeAlias = collections.abc.Callable[
    [starlette.requests.Request], collections.abc.Awaitable[starlette.responses.Response]
]


class HttpError(Exception):
    """An answer other than the page: status, message, and headers (a 401's challenge)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Throughput:
    """Enqueued and finished jobs per second, per queue: the counters ``queue_overview``
    reads only grow, so two readings a while apart give the rate between them. Readings of
    the last minute are kept in memory, per process."""

    def __init__(self) -> None:
        self._readings: dict[str, collections.deque[tuple[float, int, int]]] = {}

    def rates(self, summary: jobqueue.QueueSummary) -> tuple[float | None, float | None]:
        now = summary.measured_at.timestamp()
        readings = self._readings.setdefault(summary.name, collections.deque())
        while readings and readings[0][0] < now - RATE_WINDOW:
            readings.popleft()
        readings.append((now, summary.enqueued, summary.finished))
        first = readings[0]
        elapsed = now - first[0]
        if elapsed < 1.0:
            return None, None
        enqueued = max(0, summary.enqueued - first[1]) / elapsed
        finished = max(0, summary.finished - first[2]) / elapsed
        return enqueued, finished


def _format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def _format_time(moment: datetime.datetime | str | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):  # as to_json gives it
        moment = datetime.datetime.fromisoformat(moment)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}/s"


def _json_text(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


class UI:
    """The app's state and its endpoints."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.access = access.Access(
            admin_token=config.admin_token, viewer_token=config.viewer_token, host=config.host
        )
        self.redactor = redaction.Redactor(config.redact)
        self.throughput = Throughput()
        self.queue: jobqueue.Queue | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            age=_format_age, time=_format_time, rate=_format_rate, json=_json_text
        )

    # --- the app ----------------------------------------------------------------------------

    def app(self) -> starlette.types.ASGIApp:
        page = self._page
        api = self._api
        routes = [
            starlette.routing.Route("/healthz", self.healthz),
            starlette.routing.Route("/", self.home),
            starlette.routing.Route("/queues", page(self.queues_page)),
            starlette.routing.Route("/jobs", page(self.jobs_page)),
            starlette.routing.Route("/jobs/{job_id}", page(self.job_page)),
            starlette.routing.Route("/schedules", page(self.schedules_page)),
            starlette.routing.Route("/audit", page(self.audit_page)),
            starlette.routing.Route(
                "/actions/confirm", page(self.confirm_page, act=True), methods=["POST"]
            ),
            starlette.routing.Route(
                "/actions/apply", page(self.apply_action, act=True, writes=True), methods=["POST"]
            ),
            starlette.routing.Route("/api/queues", api(self.api_queues)),
            starlette.routing.Route("/api/workers", api(self.api_workers)),
            starlette.routing.Route("/api/jobs", api(self.api_jobs)),
            starlette.routing.Route("/api/jobs/count", api(self.api_count)),
            starlette.routing.Route(
                "/api/jobs/{action}",
                api(self.api_job_action, act=True, writes=True),
                methods=["POST"],
            ),
            starlette.routing.Route("/api/jobs/{job_id}", api(self.api_job)),
            starlette.routing.Route(
                "/api/queues/{name}/{action}",
                api(self.api_queue_action, act=True, writes=True),
                methods=["POST"],
            ),
            starlette.routing.Route("/api/schedules", api(self.api_schedules)),
            starlette.routing.Route("/api/audit", api(self.api_audit)),
            starlette.routing.Mount(
                "/static", starlette.staticfiles.StaticFiles(directory=HERE / "static")
            ),
        ]
        app = starlette.applications.Starlette(routes=routes, lifespan=self._lifespan)
        return _headers(app)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: object) -> collections.abc.AsyncIterator[None]:
        """The UI serves at once; it opens its pool meanwhile, again and again while the
        database is unreachable, answering 503 (and /healthz not ok) until it can."""
        opening = asyncio.create_task(self._open_queue())
        try:
            yield
        finally:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            if self.queue is not None:
                await self.queue.close()
                self.queue = None

    async def _open_queue(self) -> None:
        delay = 0.5
        while True:
            queue = jobqueue.Queue(self.config.database_url)
            try:
                await queue.open()
            except (psycopg.Error, OSError) as error:
                await queue.close()
                reason = (
                    jobqueue.describe_database_error(error)
                    if isinstance(error, psycopg.Error)
                    else str(error)
                )
                logger.warning("[UI] Database unavailable (retrying in %gs): %s", delay, reason)
                await asyncio.sleep(delay)
                delay = min(2 * delay, MAX_RECONNECT_DELAY)
                continue
            self.queue = queue
            logger.info("[UI] Connected to the database")
            return

    @property
    def _queue(self) -> jobqueue.Queue:
        if self.queue is None:
            raise HttpError(503, "the UI has no database connection yet (see its log)")
        return self.queue

    # --- guarding every endpoint --------------------------------------------------------

    def _identify(self, request: starlette.requests.Request, act: bool) -> access.Identity:
        if self.access.open and not access.is_loopback(request.url.hostname or ""):
            # An open UI answers to loopback names only: a page elsewhere that rebinds its
            # own name to 127.0.0.1 (DNS rebinding) must not read it, or act through it.
            raise HttpError(403, "an open UI answers only when asked as localhost")
        identity = self.access.identify(request.headers.get("authorization"))
        if identity is None:
            raise HttpError(
                401,
                "sign in: a token, or a user name and token",
                {"www-authenticate": access.CHALLENGE},
            )
        if act and not identity.may_act:
            raise HttpError(403, f"{identity.actor} may look but not act (read-only role)")
        return identity

    async def _guarded(
        self,
        request: starlette.requests.Request,
        act: bool,
        handler: collections.abc.Callable[..., collections.abc.Awaitable[typing.Any]],
        *,
        writes: bool,
    ) -> typing.Any:
        identity = self._identify(request, act)
        # Reads stop at the query timeout; an action is never cut short by it (its batches
        # are short statements each, however many jobs it touches).
        bound = None if writes else self.config.query_timeout
        try:
            async with asyncio.timeout(bound):
                return await handler(request, identity)
        except TimeoutError:
            raise HttpError(
                503,
                f"the database took longer than {self.config.query_timeout:g}s: narrow the"
                " filter (a queue, a status, a time range)",
            ) from None
        except filters.FilterError as error:
            raise HttpError(400, str(error)) from None
        except jobqueue.JobNotFoundError as error:
            raise HttpError(404, str(error)) from None
        except (ValueError, TypeError, jobqueue.JobStateError) as error:
            raise HttpError(400, str(error)) from None
        except psycopg.Error as error:
            if jobqueue.classify_error(error) is jobqueue.ErrorKind.TRANSIENT:
                raise HttpError(503, jobqueue.describe_database_error(error)) from None
            raise

    def _page(
        self,
        handler: Handler[starlette.responses.Response],
        *,
        act: bool = False,
        writes: bool = False,
    ) -> Endpoint:
        async def endpoint(request: starlette.requests.Request) -> starlette.responses.Response:
            try:
                response: starlette.responses.Response = await self._guarded(
                    request, act, handler, writes=writes
                )
                return response
            except HttpError as error:
                # Who is asking, on the error page, unless that was the problem.
                identity = (
                    None
                    if error.status in (401, 403)
                    else self.access.identify(request.headers.get("authorization"))
                )
                return self._render(
                    request,
                    identity,
                    "error.html",
                    {"status": error.status, "message": error.message},
                    status=error.status,
                    headers=error.headers,
                )

        return endpoint

    def _api(
        self, handler: Handler[object], *, act: bool = False, writes: bool = False
    ) -> Endpoint:
        async def endpoint(request: starlette.requests.Request) -> starlette.responses.Response:
            try:
                if act:
                    identity = self._identify(request, act)
                    if not self.access.csrf_valid(identity, request.headers.get("x-csrf-token")):
                        raise HttpError(
                            403,
                            "this request needs the X-CSRF-Token header (or a Bearer token)",
                        )
                body = await self._guarded(request, act, handler, writes=writes)
                return starlette.responses.JSONResponse(body)
            except HttpError as error:
                return starlette.responses.JSONResponse(
                    {"error": error.message}, status_code=error.status, headers=error.headers
                )

        return endpoint

    def _render(
        self,
        request: starlette.requests.Request,
        identity: access.Identity | None,
        template: str,
        context: dict[str, typing.Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> starlette.responses.HTMLResponse:
        html = self.templates.get_template(template).render(
            request=request,
            identity=identity,
            csrf=None if identity is None else self.access.csrf_token(identity),
            path=request.url.path,
            statuses=filters.STATUSES,
            **{"notice": None, **context},
        )
        return starlette.responses.HTMLResponse(html, status_code=status, headers=headers)

    # --- reading ----------------------------------------------------------------------------

    async def healthz(self, request: starlette.requests.Request) -> starlette.responses.Response:
        try:
            async with asyncio.timeout(self.config.query_timeout):
                await self._queue.get_queue_stats(queue="-")  # a few counter rows, any DB
        except HttpError as error:
            return starlette.responses.PlainTextResponse(error.message, status_code=503)
        except (TimeoutError, psycopg.Error, OSError) as error:
            return starlette.responses.PlainTextResponse(
                f"database unavailable: {error}", status_code=503
            )
        return starlette.responses.PlainTextResponse("ok")

    async def home(self, request: starlette.requests.Request) -> starlette.responses.Response:
        return starlette.responses.RedirectResponse("/queues", status_code=303)

    async def _overview(self) -> dict[str, typing.Any]:
        summaries = await self._queue.queue_overview()
        workers = await self._queue.list_workers()
        queues = []
        for summary in summaries:
            enqueued_rate, finished_rate = self.throughput.rates(summary)
            queues.append(
                {
                    **summary.to_json(),
                    "enqueued_rate": enqueued_rate,
                    "finished_rate": finished_rate,
                    "busy": sum(w.running for w in workers if w.queue == summary.name),
                }
            )
        return {"queues": queues, "workers": [worker.to_json() for worker in workers]}

    async def queues_page(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.responses.Response:
        overview = await self._overview()
        return self._render(
            request, identity, "queues.html", {**overview, **await self._notice(request)}
        )

    async def api_queues(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        return await self._overview()

    async def api_workers(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        queue = request.query_params.get("queue") or None
        return {"workers": [w.to_json() for w in await self._queue.list_workers(queue)]}

    def _job_json(self, job: jobqueue.Job) -> dict[str, typing.Any]:
        out = job.to_json()
        if self.redactor:
            out["payload"] = self.redactor.redact(out["payload"])
            out["result"] = self.redactor.redact(out["result"])
        return out

    def _form_filter(self, request: starlette.requests.Request) -> filters.FormFilter:
        form_filter = filters.parse(request.query_params.multi_items())
        self._check_redacted(form_filter.job_filter)
        return form_filter

    def _check_redacted(self, job_filter: jobqueue.JobFilter) -> None:
        if job_filter.payload_contains is not None and self.redactor:
            path = self.redactor.touched_by(job_filter.payload_contains)
            if path is not None:
                raise filters.FilterError(
                    f"payload: {path} is redacted, so jobs cannot be filtered by it"
                )

    async def _job_page_rows(
        self, request: starlette.requests.Request, job_filter: jobqueue.JobFilter
    ) -> tuple[list[jobqueue.Job], str | None]:
        cursor = request.query_params.get("after") or None
        oldest_first = request.query_params.get("order") == "oldest"
        jobs = await self._queue.list_jobs(
            job_filter,
            after=cursor,
            oldest_first=oldest_first,
            limit=self.config.page_size + 1,
        )
        more = len(jobs) > self.config.page_size
        jobs = jobs[: self.config.page_size]
        return jobs, str(jobs[-1].id) if more else None

    async def jobs_page(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.responses.Response:
        try:
            form_filter = self._form_filter(request)
        except filters.FilterError as error:
            form_filter = filters.FormFilter({}, jobqueue.JobFilter())
            return self._render(
                request,
                identity,
                "jobs.html",
                {"filter": form_filter, "jobs": [], "next": None, "error": str(error), "order": ""},
                status=400,
            )
        jobs, next_cursor = await self._job_page_rows(request, form_filter.job_filter)
        order = "oldest" if request.query_params.get("order") == "oldest" else ""
        return self._render(
            request,
            identity,
            "jobs.html",
            {
                "filter": form_filter,
                "jobs": [self._job_json(job) for job in jobs],
                "next": None
                if next_cursor is None
                else form_filter.query_string(after=next_cursor, order=order),
                "error": None,
                "order": order,
                **await self._notice(request),
            },
        )

    async def api_jobs(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        form_filter = self._form_filter(request)
        jobs, next_cursor = await self._job_page_rows(request, form_filter.job_filter)
        return {"jobs": [self._job_json(job) for job in jobs], "next_after": next_cursor}

    async def api_count(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        form_filter = self._form_filter(request)
        counted = await self._queue.count_jobs(form_filter.job_filter, limit=COUNT_LIMIT)
        return counted.to_json()

    async def _job(self, job_id: str) -> jobqueue.Job:
        try:
            checked = uuid.UUID(job_id)
        except ValueError:
            raise HttpError(404, f"{job_id[:40]!r} is not a job id") from None
        job = await self._queue.get_job_status(checked)
        if job is None:
            raise HttpError(404, f"no job with id {checked}")
        return job

    async def job_page(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.responses.Response:
        job = await self._job(request.path_params["job_id"])
        follow_ups = []
        if job.follow_ups:
            follow_ups = await self._queue.list_jobs(
                jobqueue.JobFilter(ids=job.follow_ups), limit=len(job.follow_ups)
            )
        return self._render(
            request,
            identity,
            "job.html",
            {
                "job": self._job_json(job),
                "follow_ups": [self._job_json(f) for f in follow_ups],
                "actions": [a.name for a in JOB_ACTIONS.values() if job.status in a.statuses],
                **await self._notice(request),
            },
        )

    async def api_job(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        return self._job_json(await self._job(request.path_params["job_id"]))

    async def schedules_page(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.responses.Response:
        schedules = [state.to_json() for state in await self._queue.list_schedules()]
        return self._render(request, identity, "schedules.html", {"schedules": schedules})

    async def api_schedules(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        return {"schedules": [state.to_json() for state in await self._queue.list_schedules()]}

    def _before(self, request: starlette.requests.Request) -> int | None:
        text = request.query_params.get("before")
        if not text:
            return None
        if not text.isdigit():
            raise filters.FilterError(f"before: {text[:40]!r} is not an entry number")
        return int(text)

    async def audit_page(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.responses.Response:
        entries = await self._queue.list_actions(before=self._before(request), limit=51)
        more = len(entries) > 50
        entries = entries[:50]
        return self._render(
            request,
            identity,
            "audit.html",
            {
                "entries": [entry.to_json() for entry in entries],
                "next": entries[-1].id if more else None,
            },
        )

    async def api_audit(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        entries = await self._queue.list_actions(before=self._before(request))
        return {"entries": [entry.to_json() for entry in entries]}

    async def _notice(self, request: starlette.requests.Request) -> dict[str, typing.Any]:
        """The audit entry of the action that led here (``?done=<id>``), to say what it did."""
        text = request.query_params.get("done", "")
        if not text.isdigit():
            return {"notice": None}
        entries = await self._queue.list_actions(before=int(text) + 1, limit=1)
        found = entries[0].to_json() if entries and entries[0].id == int(text) else None
        return {"notice": found}

    # --- acting -----------------------------------------------------------------------------

    async def _proposal(self, form: starlette.datastructures.FormData) -> dict[str, typing.Any]:
        """What a submitted form asks: the action, on which jobs (the ids selected, or every
        job the filter names) or queue, and how many it will touch."""
        requested = str(form.get("action", ""))
        name, _, scope = requested.partition(":")
        if name in QUEUE_ACTIONS:
            queue_name = str(form.get("queue", ""))
            if not queue_name:
                raise filters.FilterError(f"{name}: which queue?")
            stats = await self._queue.get_queue_stats(queue=queue_name)
            return {
                "action": name,
                "scope": "queue",
                "queue": queue_name,
                "count": jobqueue.JobCount(stats["pending"]),
                "what": f"queue {queue_name} ({stats['pending']:,} jobs pending)",
                "ids": [],
                "form_filter": None,
            }
        action = JOB_ACTIONS.get(name)
        if action is None or scope not in ("selected", "matching"):
            raise filters.FilterError(f"unknown action {requested[:40]!r}")
        form_filter = filters.parse(
            (name, value) for name, value in form.multi_items() if isinstance(value, str)
        )
        if scope == "selected":
            ids = [str(value) for value in form.getlist("id")]
            if not ids:
                raise filters.FilterError("no jobs selected: tick some, or act on all that match")
            job_filter = jobqueue.JobFilter(ids=ids, statuses=list(action.statuses))
            what = f"{len(ids)} selected job{'s' if len(ids) != 1 else ''}"
        else:
            self._check_redacted(form_filter.job_filter)
            narrowed = action.narrow(form_filter.job_filter)
            if narrowed is None:
                raise filters.FilterError(
                    f"{name} changes only {', '.join(action.statuses)} jobs; this filter names none"
                )
            job_filter = narrowed
            what = (
                f"every {' or '.join(narrowed.statuses or ())} job matching"
                f" {form_filter.describe()}"
            )
        count = await self._queue.count_jobs(job_filter, limit=COUNT_LIMIT)
        return {
            "action": name,
            "scope": scope,
            "job_filter": job_filter,
            "form_filter": form_filter,
            "ids": job_filter.ids or [],
            "count": count,
            "what": what,
        }

    async def _checked_form(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.datastructures.FormData:
        form = await request.form()
        token = form.get("csrf")
        if not self.access.csrf_valid(identity, token if isinstance(token, str) else None):
            raise HttpError(403, "this form is not one this UI gave you (CSRF check): reload it")
        return form

    async def confirm_page(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.responses.Response:
        form = await self._checked_form(request, identity)
        proposal = await self._proposal(form)
        return self._render(
            request,
            identity,
            "confirm.html",
            {**proposal, "return_to": _local_path(str(form.get("return_to", "")))},
        )

    async def apply_action(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> starlette.responses.Response:
        form = await self._checked_form(request, identity)
        proposal = await self._proposal(form)
        entry = await self._act(identity, proposal)
        return_to = _local_path(str(form.get("return_to", "")))
        separator = "&" if "?" in return_to else "?"
        return starlette.responses.RedirectResponse(
            f"{return_to}{separator}done={entry.id}", status_code=303
        )

    async def _act(
        self, identity: access.Identity, proposal: dict[str, typing.Any]
    ) -> jobqueue.AuditEntry:
        """Do what ``proposal`` says. Its audit entry is written first and completed when it
        ends, so an action cut short (the database gone midway) is on record all the same."""
        name = proposal["action"]
        queue = self._queue
        on_queue = proposal["scope"] == "queue"
        job_filter: jobqueue.JobFilter | None = None if on_queue else proposal["job_filter"]
        entry = await queue.record_action(
            actor=identity.actor,
            role=identity.role.value,
            action=name,
            queue=proposal["queue"] if job_filter is None else job_filter.queue,
            job_filter=job_filter,
            detail=f"{proposal['what']}: under way",
        )
        try:
            if job_filter is None:
                changed = None
                if name == "pause":
                    await queue.pause_queue(proposal["queue"])
                    detail = "paused"
                else:
                    resumed = await queue.resume_queue(proposal["queue"])
                    detail = "resumed" if resumed else "was not paused"
            else:
                detail = proposal["what"]
                if name == "retry":
                    changed = len(await queue.retry_jobs(job_filter))
                elif name == "cancel":
                    reason = f"cancelled by {identity.actor}"
                    changed = len(await queue.cancel_jobs(job_filter, reason=reason))
                else:
                    changed = await queue.delete_jobs(job_filter)
        except BaseException as error:
            with contextlib.suppress(Exception):  # the database may be why it stopped
                await queue.finish_action(
                    entry.id, jobs=None, detail=f"{proposal['what']}: cut short ({error!r})"
                )
            raise
        logger.info(
            "[UI] %s (%s): %s %s%s",
            identity.actor,
            identity.role,
            name,
            proposal["what"] if job_filter is not None else proposal["queue"],
            "" if changed is None else f": {changed} jobs",
        )
        return await queue.finish_action(entry.id, jobs=changed, detail=detail)

    async def api_job_action(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        name = request.path_params["action"]
        action = JOB_ACTIONS.get(name)
        if action is None:
            raise HttpError(404, f"no action {name[:40]!r}: retry, cancel or delete")
        try:
            body = await request.json()
        except ValueError:
            raise filters.FilterError('send JSON: {"ids": [...]} or {"filter": {...}}') from None
        if not isinstance(body, dict) or set(body) - {"ids", "filter"} or len(body) != 1:
            raise filters.FilterError('send {"ids": [...]} or {"filter": {...}}, one of them')
        if "ids" in body:
            job_filter = jobqueue.JobFilter(ids=body["ids"], statuses=list(action.statuses))
            what = f"{len(body['ids']) if isinstance(body['ids'], list) else 0} given jobs"
        else:
            given = filters.from_json(body["filter"])
            self._check_redacted(given)
            narrowed = action.narrow(given)
            if narrowed is None:
                return {"changed": 0, "audit_id": None}
            job_filter = narrowed
            what = "every job matching the filter"
        entry = await self._act(
            identity, {"action": name, "scope": "api", "job_filter": job_filter, "what": what}
        )
        return {"changed": entry.jobs, "audit_id": entry.id}

    async def api_queue_action(
        self, request: starlette.requests.Request, identity: access.Identity
    ) -> object:
        name = request.path_params["action"]
        if name not in QUEUE_ACTIONS:
            raise HttpError(404, f"no action {name[:40]!r}: pause or resume")
        queue_name = request.path_params["name"]
        entry = await self._act(
            identity,
            {"action": name, "scope": "queue", "queue": queue_name, "what": f"queue {queue_name}"},
        )
        paused = await self._queue.paused_queues(request.path_params["name"])
        return {"paused": bool(paused), "audit_id": entry.id}


def _local_path(text: str) -> str:
    """Where to go after an action: a path on this site only (never another origin)."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme or parsed.netloc or not parsed.path.startswith("/") or text.startswith("//"):
        return "/queues"
    return urllib.parse.urlunsplit(("", "", parsed.path, parsed.query, ""))


def _headers(app: starlette.types.ASGIApp) -> starlette.types.ASGIApp:
    """Wraps ``app``: adds the security headers and the server time to every answer."""

    async def with_headers(
        scope: starlette.types.Scope,
        receive: starlette.types.Receive,
        send: starlette.types.Send,
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: starlette.types.Message) -> None:
            if message["type"] == "http.response.start":
                headers = starlette.datastructures.MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers["cache-control"] = "max-age=300" if static else "no-store"
                elapsed = (time.perf_counter() - started) * 1000
                headers["server-timing"] = f"app;dur={elapsed:.1f}"
            await send(message)

        await app(scope, receive, send_with_headers)

    return with_headers


def create_app(config: Config) -> starlette.types.ASGIApp:
    """The UI's ASGI app; it opens its pool to ``config.database_url`` at startup."""
    return UI(config).app()
