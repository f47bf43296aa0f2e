"""Reliable signed webhook delivery: durable outbox, Standard Webhooks
signatures, retry schedule, dead letters, replay.

Knows nothing of SIP or the menu, and never imports `voicebot`: it takes an
event type and a JSON-able payload and guarantees at-least-once delivery.

    # the application opens the database and applies webhooks.schema.MIGRATIONS
    ids = await enqueue(conn, "call.categorized", data, endpoints, now=clock.now())
    await conn.commit()                             # with the caller's own row
    dispatcher.notify()
"""

from webhooks.client import AttemptResult, post_signed
from webhooks.dispatcher import Dispatcher
from webhooks.model import (
    STANDARD_SCHEDULE,
    Clock,
    DeliveryPolicy,
    DispatcherMetrics,
    Endpoint,
    SystemClock,
)
from webhooks.outbox import (
    Claim,
    DeliveryRecord,
    Outbox,
    count_by_status,
    enable_endpoint,
    encode_body,
    enqueue,
    enqueue_claimed_sync,
    enqueue_sync,
    list_deliveries,
    new_webhook_id,
    replay,
)
from webhooks.schema import MIGRATIONS, SCHEMA_VERSION
from webhooks.signing import sign, signed_headers

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STANDARD_SCHEDULE",
    "AttemptResult",
    "Claim",
    "Clock",
    "DeliveryPolicy",
    "DeliveryRecord",
    "Dispatcher",
    "DispatcherMetrics",
    "Endpoint",
    "Outbox",
    "SystemClock",
    "count_by_status",
    "enable_endpoint",
    "encode_body",
    "enqueue",
    "enqueue_claimed_sync",
    "enqueue_sync",
    "list_deliveries",
    "new_webhook_id",
    "post_signed",
    "replay",
    "sign",
    "signed_headers",
]
