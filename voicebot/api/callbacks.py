"""The callback queue over HTTP.

GET  /api/v1/callbacks              filters (state, number, period) + cursor, newest first
GET  /api/v1/callbacks/{id}         one job, its missed calls and attempts
POST /api/v1/callbacks              an explicit request ("call me back"), optional not_before
POST /api/v1/callbacks/{id}/cancel
POST /api/v1/callbacks/{id}/retry
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from voicebot.api.period import FromField, PeriodError, PeriodText, ToField, resolve
from voicebot.api.schema import (
    ErrorBody,
    Operation,
    QueryModel,
    add_operation,
    parse_body,
    parse_path,
    parse_query,
    refuse,
    reply,
)
from voicebot.callbacks.queue import CallbackJob, CallbackQueue, JobFilter, QueueError
from voicebot.cursor import CursorError

MAX_PAGE = 500
JobStateText = Literal[
    "queued", "dialling", "completed", "not_needed", "failed", "cancelled", "skipped"
]
NumberText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[0-9+*#\-() .]+$"
    ),
]


@dataclass(frozen=True)
class CallbacksApi:
    queue: CallbackQueue
    enabled: bool
    zone: ZoneInfo


CALLBACKS_KEY = web.AppKey("callbacks_api", CallbacksApi)


class MissedCallOut(BaseModel):
    call_id: int | None = Field(description="the call's id in /api/v1/calls")
    pbx_call_id: str | None
    missed_at: str


class AttemptOut(BaseModel):
    id: int
    round: int
    started_at: str
    ended_at: str | None
    targets: list[str]
    outcome: str | None = Field(description="null while the attempt is in progress")
    target: str | None = Field(description="the extension that answered")
    sip_status: int | None
    talk_s: float | None
    detail: str | None


class CallbackOut(BaseModel):
    """One callback job."""

    id: int
    client_number: str = Field(description="E.164, or verbatim for an allowed internal number")
    raw_number: str | None
    dial: str | None = Field(description="what the bot dials (callbacks.dial_template)")
    state: JobStateText
    reason: str | None
    source: Literal["pbx", "sip", "api", "cli"]
    attempt: int = Field(description="the round the next (or last) attempt belongs to")
    attempts: int = Field(description="attempts placed so far")
    due_at: str | None
    not_before: str | None
    first_missed_at: str
    missed_at: str
    created_at: str
    closed_at: str | None
    cancel_requested: str | None = Field(
        description="a cancellation waiting for the ringing attempt to end"
    )
    missed_calls: list[MissedCallOut]
    attempt_log: list[AttemptOut]

    @classmethod
    def of(cls, job: CallbackJob) -> CallbackOut:
        return cls.model_validate(job.as_json())


class CallbackPage(BaseModel):
    callbacks: list[CallbackOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page")


class CallbacksQuery(QueryModel):
    from_: PeriodText | None = FromField
    to: PeriodText | None = ToField
    state: JobStateText | None = None
    number: str | None = Field(None, max_length=64, description="the client's number")
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=200)


class CallbackPath(BaseModel):
    id: int = Field(ge=1, le=2**63 - 1)


class CallbackRequest(BaseModel):
    """Call this number back (a website widget, the dashboard)."""

    model_config = ConfigDict(extra="ignore")

    number: NumberText = Field(description="the client's number, national or +E.164")
    not_before: AwareDatetime | None = Field(None, description="not before this time")


def callbacks_api(request: web.Request) -> CallbacksApi:
    return request.app[CALLBACKS_KEY]


async def list_callbacks(request: web.Request) -> web.Response:
    api = callbacks_api(request)
    query = parse_query(request, CallbacksQuery)
    try:
        period = resolve(query.from_, query.to, api.zone)
    except PeriodError as exc:
        raise refuse(request, 400, str(exc), exc.field) from None
    filters = JobFilter(
        state=query.state, number=query.number, since=period.since, until=period.until
    )
    try:
        jobs, cursor = await api.queue.list(filters, limit=query.limit, cursor=query.cursor)
    except CursorError as exc:
        raise refuse(request, 400, str(exc), "cursor") from None
    return reply(CallbackPage(callbacks=[CallbackOut.of(j) for j in jobs], next_cursor=cursor))


async def get_callback(request: web.Request) -> web.Response:
    api = callbacks_api(request)
    path = parse_path(request, CallbackPath)
    job = await api.queue.get(path.id)
    if job is None:
        raise refuse(request, 404, f"id: no callback {path.id}", "id")
    return reply(CallbackOut.of(job))


async def post_callback(request: web.Request) -> web.Response:
    api = callbacks_api(request)
    body = await parse_body(request, CallbackRequest)
    if not api.enabled:
        raise refuse(request, 409, "callbacks.enabled is false; turn callbacks on first")
    try:
        intake = await api.queue.request_callback(
            body.number, source="api", not_before=body.not_before
        )
    except QueueError as exc:
        raise refuse(request, 400, str(exc), "number") from None
    job = await api.queue.get(intake.job.id)
    assert job is not None
    return reply(CallbackOut.of(job), status=201 if intake.created else 200)


async def _steer(request: web.Request, action: Literal["cancel", "retry"]) -> web.Response:
    api = callbacks_api(request)
    path = parse_path(request, CallbackPath)
    try:
        if action == "cancel":
            await api.queue.cancel(path.id, reason="operator")
        else:
            await api.queue.retry(path.id)
    except QueueError as exc:
        status = 404 if "no callback" in str(exc) else 409
        raise refuse(request, status, str(exc), "id") from None
    job = await api.queue.get(path.id)
    assert job is not None
    return reply(CallbackOut.of(job))


async def cancel_callback(request: web.Request) -> web.Response:
    return await _steer(request, "cancel")


async def retry_callback(request: web.Request) -> web.Response:
    return await _steer(request, "retry")


def register(app: web.Application, api: CallbacksApi) -> None:
    app[CALLBACKS_KEY] = api
    app.router.add_get("/api/v1/callbacks", list_callbacks)
    app.router.add_post("/api/v1/callbacks", post_callback)
    app.router.add_get("/api/v1/callbacks/{id}", get_callback)
    app.router.add_post("/api/v1/callbacks/{id}/cancel", cancel_callback)
    app.router.add_post("/api/v1/callbacks/{id}/retry", retry_callback)
    steer: dict[int, type[BaseModel] | None] = {
        200: CallbackOut,
        400: ErrorBody,
        404: ErrorBody,
        409: ErrorBody,
    }
    for operation in (
        Operation(
            "GET",
            "/api/v1/callbacks",
            "Callback jobs, newest first, filtered; page on with next_cursor",
            "callbacks",
            {200: CallbackPage, 400: ErrorBody},
            query=CallbacksQuery,
            operation_id="list_callbacks",
        ),
        Operation(
            "POST",
            "/api/v1/callbacks",
            "Ask for a callback; merged into the client's open job when there is one",
            "callbacks",
            {
                200: CallbackOut,
                201: CallbackOut,
                400: ErrorBody,
                409: ErrorBody,
                413: ErrorBody,
                415: ErrorBody,
            },
            body=CallbackRequest,
            operation_id="request_callback",
        ),
        Operation(
            "GET",
            "/api/v1/callbacks/{id}",
            "One callback job with its missed calls and attempts",
            "callbacks",
            {200: CallbackOut, 400: ErrorBody, 404: ErrorBody},
            path_params=CallbackPath,
            operation_id="get_callback",
        ),
        Operation(
            "POST",
            "/api/v1/callbacks/{id}/cancel",
            "Cancel an open job (a ringing attempt is not interrupted)",
            "callbacks",
            steer,
            path_params=CallbackPath,
            operation_id="cancel_callback",
        ),
        Operation(
            "POST",
            "/api/v1/callbacks/{id}/retry",
            "Queue a job again, due now (working hours still apply)",
            "callbacks",
            steer,
            path_params=CallbackPath,
            operation_id="retry_callback",
        ),
    ):
        add_operation(app, operation)
