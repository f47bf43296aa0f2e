"""What the newest-first lists (`/api/v1/calls`, `/api/v1/callbacks`) share:
the page size, the keyset cursor in and out (voicebot/cursor.py), the
client-number filter, and the id path of one row."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, Field

from voicebot.api.schema import refuse
from voicebot.cursor import CursorError, decode_cursor

T = TypeVar("T")

#: The most rows one page (`limit`) holds.
MAX_PAGE = 500
LimitField = Field(50, ge=1, le=MAX_PAGE)
CursorField = Field(None, max_length=200)
NextCursorField = Field(description="pass as `cursor` for the next (older) page")
NumberField = Field(None, max_length=64, description="the client's number")


class IdPath(BaseModel):
    id: int = Field(ge=1, le=2**63 - 1)


async def paged(request: web.Request, listing: Awaitable[T]) -> T:
    """A page of a list; a cursor this API did not give out is a 400 naming it."""
    try:
        return await listing
    except CursorError as exc:
        raise _refused(request, exc) from None


def check_cursor(request: web.Request, cursor: str | None) -> None:
    """`paged`'s 400 before the list is asked: a page computed in a worker
    process (voicebot/api/worker_pool.py) gets a cursor known to decode."""
    if cursor is None:
        return
    try:
        decode_cursor(cursor)
    except CursorError as exc:
        raise _refused(request, exc) from None


def _refused(request: web.Request, error: CursorError) -> web.HTTPException:
    return refuse(request, 400, str(error), "cursor")
