"""The transactional outbox: writing events, and the operator's queries.

`enqueue` writes on the *caller's* connection and never commits: the caller's
own row (a confirmed categorization, say) and its event commit together or not
at all. Delivery happens later, from the `Dispatcher`'s own connection.

`enqueue_claimed_sync` is the same, but the delivery rows are written already
`in_flight` (claimed) and come back as `Claim`s, for a caller that hands them
to the running dispatcher once its transaction has committed
(`Dispatcher.deliver_claimed`): the dispatcher then POSTs at once, with no
claim statement of its own between the commit and the request. Durability
is the claim's: a process that dies first leaves them `in_flight`, and the
next `Dispatcher.open()` puts them back to `pending`.

webhook-id: one per message (`msg_<uuid4 hex>`), shared by every endpoint the
message goes to and kept on every retry and replay. Standard Webhooks allows
this, and it lets one receiver behind two URLs deduplicate too.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiosqlite

from webhooks.model import Endpoint

DeliveryStatus = Literal["pending", "in_flight", "delivered", "failed"]


@dataclass(frozen=True)
class Claim:
    """A delivery row marked `in_flight` for one dispatcher to send."""

    delivery_id: int
    webhook_id: str
    endpoint_url: str
    attempts: int
    body: bytes


STATUSES: tuple[str, ...] = ("pending", "in_flight", "delivered", "failed")


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_body(event_type: str, data: dict[str, Any], timestamp: datetime) -> str:
    """The exact JSON sent on the wire, fixed at enqueue so every retry signs
    the same bytes."""
    return json.dumps(
        {"type": event_type, "timestamp": iso_utc(timestamp), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    )


def _rows(
    event_type: str, data: dict[str, Any], endpoints: Sequence[Endpoint], now: datetime
) -> tuple[str, tuple[Any, ...], list[tuple[Any, ...]]] | None:
    """The message row and its delivery rows, or None when no endpoint wants the event."""
    if not event_type:
        raise ValueError("event_type is required")
    matching = [endpoint.url for endpoint in endpoints if endpoint.wants(event_type)]
    matching = list(dict.fromkeys(matching))  # the same URL twice is one delivery
    if not matching:
        return None
    body = encode_body(event_type, data, now)
    webhook_id = new_webhook_id()
    at = now.timestamp()
    return (
        webhook_id,
        (webhook_id, event_type, body, at),
        [(webhook_id, url, at, at) for url in matching],
    )


_INSERT_MESSAGE = (
    "INSERT INTO webhooks_messages (id, event_type, body, created_at) VALUES (?, ?, ?, ?)"
)
_INSERT_DELIVERY = (
    "INSERT INTO webhooks_deliveries"
    " (message_id, endpoint_url, status, attempts, next_attempt_at, created_at)"
    " VALUES (?, ?, 'pending', 0, ?, ?)"
)
_INSERT_CLAIMED = (
    "INSERT INTO webhooks_deliveries"
    " (message_id, endpoint_url, status, attempts, next_attempt_at, created_at)"
    " VALUES (?, ?, 'in_flight', 0, ?, ?) RETURNING id"
)


async def enqueue(
    conn: aiosqlite.Connection,
    event_type: str,
    data: dict[str, Any],
    endpoints: Sequence[Endpoint],
    *,
    now: datetime,
) -> list[str]:
    """Add one event to the outbox inside the caller's open transaction.

    One delivery row per endpoint whose `events` match. Does NOT commit.
    Returns one webhook-id per delivery created (the same id each time, as
    the id is per message); an empty list when no endpoint wants the event, in
    which case nothing is written. Raises TypeError/ValueError before writing
    anything if `data` is not JSON-able.
    """
    rows = _rows(event_type, data, endpoints, now)
    if rows is None:
        return []
    webhook_id, message, deliveries = rows
    await conn.execute(_INSERT_MESSAGE, message)
    await conn.executemany(_INSERT_DELIVERY, deliveries)
    return [webhook_id] * len(deliveries)


def enqueue_claimed_sync(
    conn: sqlite3.Connection,
    event_type: str,
    data: dict[str, Any],
    endpoints: Sequence[Endpoint],
    *,
    now: datetime,
) -> list[Claim]:
    """`enqueue_sync` with the delivery rows written `in_flight`: one `Claim`
    per delivery, for `Dispatcher.deliver_claimed` once the caller's
    transaction has committed (see the module docstring). Does NOT commit."""
    rows = _rows(event_type, data, endpoints, now)
    if rows is None:
        return []
    webhook_id, message, deliveries = rows
    conn.execute(_INSERT_MESSAGE, message)
    body = message[2].encode()
    claims = []
    for delivery in deliveries:
        (delivery_id,) = conn.execute(_INSERT_CLAIMED, delivery).fetchone()
        claims.append(Claim(delivery_id, webhook_id, delivery[1], 0, body))
    return claims


def enqueue_sync(
    conn: sqlite3.Connection,
    event_type: str,
    data: dict[str, Any],
    endpoints: Sequence[Endpoint],
    *,
    now: datetime,
) -> list[str]:
    """`enqueue` for code already running on the database's own thread (a whole
    transaction done in one trip there, as the call journal's save is)."""
    rows = _rows(event_type, data, endpoints, now)
    if rows is None:
        return []
    webhook_id, message, deliveries = rows
    conn.execute(_INSERT_MESSAGE, message)
    conn.executemany(_INSERT_DELIVERY, deliveries)
    return [webhook_id] * len(deliveries)


#: What operators ask for (`--status`, `?status=`) → delivery row states.
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "pending": ("pending", "in_flight"),
    "failed": ("failed",),
    "delivered": ("delivered",),
}


@dataclass(frozen=True)
class DeliveryRecord:
    """One row of `voicebot webhooks list`."""

    delivery_id: int
    webhook_id: str
    event_type: str
    endpoint_url: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float | None
    last_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None
    failed_at: float | None


_SELECT_RECORD = """
    SELECT d.id, d.message_id, m.event_type, d.endpoint_url, d.status, d.attempts,
           d.created_at, d.next_attempt_at, d.last_attempt_at, d.last_status,
           d.last_error, d.delivered_at, d.failed_at
      FROM webhooks_deliveries d JOIN webhooks_messages m ON m.id = d.message_id
"""


async def list_deliveries(
    conn: aiosqlite.Connection,
    *,
    statuses: Iterable[str] | None = None,
    webhook_id: str | None = None,
    limit: int = 100,
) -> list[DeliveryRecord]:
    clauses: list[str] = []
    params: list[Any] = []
    if statuses is not None:
        wanted = list(statuses)
        clauses.append(f"d.status IN ({','.join('?' * len(wanted))})")
        params.extend(wanted)
    if webhook_id is not None:
        clauses.append("d.message_id = ?")
        params.append(webhook_id)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    async with conn.execute(
        f"{_SELECT_RECORD}{where} ORDER BY d.created_at DESC, d.id DESC LIMIT ?", params
    ) as cursor:
        rows = await cursor.fetchall()
    return [DeliveryRecord(*row) for row in rows]


async def count_by_status(conn: aiosqlite.Connection) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    async with conn.execute(
        "SELECT status, COUNT(*) FROM webhooks_deliveries GROUP BY status"
    ) as cursor:
        for status, count in await cursor.fetchall():
            counts[status] = count
    return counts


async def replay(
    conn: aiosqlite.Connection,
    *,
    now: datetime,
    webhook_id: str | None = None,
    failed: bool = False,
    endpoint_url: str | None = None,
) -> int:
    """Put deliveries back in the queue with their original webhook-id and a
    fresh attempt budget; commits. `webhook_id`: that message, whatever its
    state (except one being sent right now); `failed=True`: every dead letter.
    Returns how many deliveries were re-queued."""
    if (webhook_id is None) == (not failed):
        raise ValueError("give either a webhook_id or failed=True")
    clauses = ["status != 'in_flight'"]
    params: list[Any] = [now.timestamp()]
    if webhook_id is not None:
        clauses.append("message_id = ?")
        params.append(webhook_id)
    if failed:
        clauses.append("status = 'failed'")
    if endpoint_url is not None:
        clauses.append("endpoint_url = ?")
        params.append(endpoint_url)
    cursor = await conn.execute(
        "UPDATE webhooks_deliveries"
        " SET status = 'pending', attempts = 0, next_attempt_at = ?,"
        "     delivered_at = NULL, failed_at = NULL"
        f" WHERE {' AND '.join(clauses)}",
        params,
    )
    await conn.commit()
    return cursor.rowcount


async def disabled_endpoints(conn: aiosqlite.Connection) -> dict[str, str]:
    async with conn.execute(
        "SELECT url, disabled_reason FROM webhooks_endpoint_state WHERE disabled_at IS NOT NULL"
    ) as cursor:
        return {url: reason or "" for url, reason in await cursor.fetchall()}


async def enable_endpoint(conn: aiosqlite.Connection, url: str) -> bool:
    """Undo a 410 Gone; commits. Dead letters it caused stay dead until replayed."""
    cursor = await conn.execute("DELETE FROM webhooks_endpoint_state WHERE url = ?", (url,))
    await conn.commit()
    return cursor.rowcount > 0


class Outbox:
    """The outbox as operators and the HTTP API see it: queries over one
    connection the application opened, so no caller reaches for the journal's
    connection to ask about deliveries."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def deliveries(
        self,
        *,
        statuses: Iterable[str] | None = None,
        webhook_id: str | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        return await list_deliveries(
            self._conn, statuses=statuses, webhook_id=webhook_id, limit=limit
        )

    async def counts(self) -> dict[str, int]:
        return await count_by_status(self._conn)

    async def disabled_endpoints(self) -> dict[str, str]:
        return await disabled_endpoints(self._conn)
