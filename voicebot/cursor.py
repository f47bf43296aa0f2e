"""Keyset cursors of the newest-first lists (calls, callback jobs).

A page ends at a row; the cursor is that row's (time, id), the order the
list is sorted by, as url-safe base64 JSON. The next page starts strictly
after it, so a row added while paging shows up once or not at all, and no
row is skipped. A cursor is hostile input: anything that does not decode to
(a number, an integer) is a `CursorError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class CursorError(ValueError):
    pass


def encode_cursor(at: float, row_id: int) -> str:
    raw = json.dumps([at, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError):
        raise CursorError("cursor: not one this API gave out") from None
    if (
        not isinstance(at, int | float)
        or not isinstance(row_id, int)
        or isinstance(at, bool)
        or isinstance(row_id, bool)
    ):
        raise CursorError("cursor: not one this API gave out")
    return float(at), row_id


def next_cursor(
    rows: Sequence[T], limit: int, position: Callable[[T], tuple[float, int]]
) -> str | None:
    """The cursor after a page's last row when the list goes on: `rows` was
    read with LIMIT `limit + 1`, and the page is `rows[:limit]`."""
    if len(rows) <= limit or limit < 1:
        return None
    return encode_cursor(*position(rows[limit - 1]))
