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

from voicebot.api.lists import CursorField, IdPath, LimitField, NextCursorField, NumberField, paged
from voicebot.api.period import PeriodQuery
from voicebot.api.schema import Routes, found, parse_body, parse_path, parse_query, refuse, reply
from voicebot.callbacks.queue import CallbackJob, CallbackQueue, JobFilter, QueueError

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
    next_cursor: str | None = NextCursorField


class CallbacksQuery(PeriodQuery):
    state: JobStateText | None = None
    number: str | None = NumberField
    limit: int = LimitField
    cursor: str | None = CursorField


class CallbackPath(IdPath):
    pass


class CallbackRequest(BaseModel):
    """Call this number back (a website widget, the dashboard)."""

    model_config = ConfigDict(extra="ignore")

    number: NumberText = Field(description="the client's number, national or +E.164")
    not_before: AwareDatetime | None = Field(None, description="not before this time")


def callbacks_api(request: web.Request) -> CallbacksApi:
    return request.app[CALLBACKS_KEY]


async def list_callbacks(request: web.Request) -> web.Response:
    """Callback jobs, newest first, filtered; page on with next_cursor"""
    api = callbacks_api(request)
    query = parse_query(request, CallbacksQuery)
    period = query.period(request, api.zone)
    filters = JobFilter(
        state=query.state, number=query.number, since=period.since, until=period.until
    )
    jobs, cursor = await paged(
        request, api.queue.list(filters, limit=query.limit, cursor=query.cursor)
    )
    return reply(CallbackPage(callbacks=[CallbackOut.of(j) for j in jobs], next_cursor=cursor))


async def get_callback(request: web.Request) -> web.Response:
    """One callback job with its missed calls and attempts"""
    api = callbacks_api(request)
    path = parse_path(request, CallbackPath)
    job = found(request, await api.queue.get(path.id), "id", f"no callback {path.id}")
    return reply(CallbackOut.of(job))


async def request_callback(request: web.Request) -> web.Response:
    """Ask for a callback; merged into the client's open job when there is one"""
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
    """Cancel an open job (a ringing attempt is not interrupted)"""
    return await _steer(request, "cancel")


async def retry_callback(request: web.Request) -> web.Response:
    """Queue a job again, due now (working hours still apply)"""
    return await _steer(request, "retry")


def register(app: web.Application, api: CallbacksApi) -> None:
    app[CALLBACKS_KEY] = api
    routes = Routes(app, "callbacks")
    many, one = "/api/v1/callbacks", "/api/v1/callbacks/{id}"
    routes.add("GET", many, list_callbacks, CallbackPage, query=CallbacksQuery)
    routes.add(
        "POST",
        many,
        request_callback,
        CallbackOut,
        body=CallbackRequest,
        created=True,
        conflict=True,
    )
    routes.add("GET", one, get_callback, CallbackOut, path_params=CallbackPath)
    for action, handler in (("cancel", cancel_callback), ("retry", retry_callback)):
        routes.add(
            "POST", f"{one}/{action}", handler, CallbackOut, path_params=CallbackPath, conflict=True
        )
