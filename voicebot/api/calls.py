"""The call journal over HTTP.

GET  /api/v1/calls          filters + keyset cursor, newest first
GET  /api/v1/calls/{id}
POST /api/v1/calls/events   a PBX call event in (201 new, 200 known)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from voicebot.api.body import Body
from voicebot.api.context import journal_api
from voicebot.api.heavy_read import answer
from voicebot.api.lists import (
    CursorField,
    IdPath,
    LimitField,
    NextCursorField,
    NumberField,
    check_cursor,
)
from voicebot.api.period import PeriodQuery
from voicebot.api.schema import Routes, found, parse_body, parse_path, parse_query, refuse, reply
from voicebot.journal.call_events import CallEvent, CallStatus, Direction
from voicebot.journal.call_types import CallType, TypeRules
from voicebot.journal.calls import CallFilter, CallLog, CallRecord
from voicebot.slices import json_in_slices, map_in_slices


class CategoryRef(BaseModel):
    code: str
    name: str | None


class CallOut(BaseModel):
    """One call of the journal."""

    id: int
    source: Literal["pbx", "cdr", "menu", "callback"]
    pbx_call_id: str | None
    direction: Direction | None = Field(description="null for a menu call the PBX never reported")
    caller: str | None
    callee: str | None
    company_number: str | None
    client_number: str | None
    manager: str | None
    status: CallStatus
    started_at: str
    answered_at: str | None
    ended_at: str | None
    wait_s: float | None
    talk_s: float | None
    types: list[CallType]
    category: CategoryRef | None
    value: float | None
    categorization_id: str | None

    @classmethod
    def of(cls, call: CallRecord, rules: TypeRules) -> CallOut:
        return cls.model_validate(call.as_json(rules))


class CallPage(BaseModel):
    calls: list[CallOut]
    next_cursor: str | None = NextCursorField


class CallsQuery(PeriodQuery):
    manager: str | None = Field(None, max_length=64)
    direction: Direction | None = None
    status: CallStatus | None = None
    type: CallType | None = None
    category: str | None = Field(None, max_length=16)
    number: str | None = NumberField
    limit: int = LimitField
    cursor: str | None = CursorField


class CallPath(IdPath):
    pass


@dataclass(frozen=True, slots=True)
class CallsPageJob:
    """One page of `GET /api/v1/calls`, its query validated (voicebot/api/body.py)."""

    filters: CallFilter
    limit: int
    cursor: str | None

    async def body(self, call_log: CallLog) -> Body:
        rows, cursor = await call_log.list(self.filters, limit=self.limit, cursor=self.cursor)
        rules = call_log.rules
        calls = await map_in_slices(lambda r: CallOut.of(r, rules), rows)
        page = CallPage(calls=calls, next_cursor=cursor)
        return Body.json(await json_in_slices(page, "calls"))


async def list_calls(request: web.Request) -> web.Response:
    """Calls, newest first, filtered; page on with next_cursor"""
    api = journal_api(request)
    query = parse_query(request, CallsQuery)
    period = query.period(request, api.zone)
    check_cursor(request, query.cursor)
    filters = CallFilter(
        since=period.since,
        until=period.until,
        manager=query.manager,
        direction=query.direction,
        status=query.status,
        call_type=query.type,
        category=query.category,
        number=query.number,
    )
    return await answer(request, CallsPageJob(filters, query.limit, query.cursor))


async def get_call(request: web.Request) -> web.Response:
    """One call"""
    api = journal_api(request)
    path = parse_path(request, CallPath)
    call = found(request, await api.call_log.get(path.id), "id", f"no call {path.id}")
    return reply(CallOut.of(call, api.call_log.rules))


async def post_call_event(request: web.Request) -> web.Response:
    """A PBX call event; re-sending the same call_id updates that call"""
    api = journal_api(request)
    event = await parse_body(request, CallEvent)
    stored = await api.call_log.record_call_event(event)
    return reply(CallOut.of(stored.call, api.call_log.rules), status=201 if stored.created else 200)


async def events_take_post_only(request: web.Request) -> web.Response:
    # Without this, GET /api/v1/calls/events would reach /api/v1/calls/{id}
    # (and aiohttp's Allow header would offer GET for a path that only takes POST).
    raise refuse(
        request, 405, f"method: {request.method} not allowed; send POST", "method", ["POST"]
    )


def register(app: web.Application) -> None:
    routes = Routes(app, "calls")
    routes.add("GET", "/api/v1/calls", list_calls, CallPage, query=CallsQuery, heavy=True)
    routes.add("GET", "/api/v1/calls/{id}", get_call, CallOut, path_params=CallPath)
    routes.add(
        "POST", "/api/v1/calls/events", post_call_event, CallOut, body=CallEvent, created=True
    )
    app.router.add_route("*", "/api/v1/calls/events", events_take_post_only)
