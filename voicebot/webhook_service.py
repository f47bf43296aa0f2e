"""Wiring between `voicebot.settings.WebhookSettings` and the `webhooks` package.

`webhooks` knows nothing of voicebot; this module is the only place that maps
one onto the other. `voicebot run`:

    dispatcher = build_dispatcher(settings, clock)
    await dispatcher.start()
    ...   # the journal commits a row + enqueue(conn, ..., dispatcher.endpoints, now=...)
    dispatcher.notify()
    ...
    await dispatcher.stop()
"""

from __future__ import annotations

import aiohttp

from voicebot.journal.database import DEFAULT_BUSY_TIMEOUT_MS, connector
from voicebot.journal.group_commit import GroupCommit
from voicebot.settings import Settings, WebhookSettings
from webhooks import STANDARD_SCHEDULE, Clock, DeliveryPolicy, Dispatcher, Endpoint

#: How long one of the dispatcher's writes may wait for a busy file (as its own
#: connection's busy_timeout would).
WEBHOOK_WRITE_BUDGET_S = DEFAULT_BUSY_TIMEOUT_MS / 1000


def endpoints_from_settings(webhooks: WebhookSettings) -> list[Endpoint]:
    return [
        Endpoint(url=endpoint.url, secrets=endpoint.secrets(), events=list(endpoint.events))
        for endpoint in webhooks.endpoints
    ]


def policy_from_settings(webhooks: WebhookSettings) -> DeliveryPolicy:
    # max_attempts (1..10) cuts the Standard Webhooks schedule short.
    return DeliveryPolicy(
        timeout_s=webhooks.timeout_s,
        schedule=tuple(webhooks.retry_schedule_s)
        if webhooks.retry_schedule_s is not None
        else STANDARD_SCHEDULE[: webhooks.max_attempts],
        concurrency_per_endpoint=webhooks.concurrency_per_endpoint,
        retention_s=webhooks.retention_days * 86400,
    )


def build_dispatcher(
    settings: Settings,
    clock: Clock | None = None,
    session: aiohttp.ClientSession | None = None,
    writes: GroupCommit | None = None,
) -> Dispatcher:
    """The dispatcher for `voicebot run`; `dispatcher.endpoints` is the list to
    pass to `webhooks.enqueue`, and `dispatcher.metrics` the counters for /metrics.
    `writes`: the journal's group commit, which then writes its claims and
    outcomes (one writer for the file; webhooks/dispatcher.py)."""
    return Dispatcher(
        connector(settings.storage.database),
        endpoints_from_settings(settings.webhooks),
        policy_from_settings(settings.webhooks),
        clock,
        session,
        poll_interval_s=settings.webhooks.poll_interval_s,
        writer=writes.writer("webhook", WEBHOOK_WRITE_BUDGET_S) if writes is not None else None,
    )
