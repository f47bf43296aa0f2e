"""The HTTP API: `GET /healthz` (unauthenticated, for probes) and the JSON
`/api/v1/...` routes behind a bearer token when `http.api_token` is set."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from pydantic import Field

from voicebot.api.metrics import metrics_text
from voicebot.api.request_gate import RequestGate
from voicebot.api.schema import QueryModel, parse_query, refuse
from voicebot.journal.store import Journal
from webhooks.outbox import STATUS_FILTERS

HealthProvider = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JOURNAL_KEY = web.AppKey("journal", Journal)
HEALTH_KEY = web.AppKey("health", object)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
#: Coroutines run before each scrape, to read figures only the database knows.
METRICS_REFRESH_KEY = web.AppKey("metrics_refresh", list)


def build_app(
    journal: Journal,
    health: HealthProvider,
    api_token: str | None,
    registry: CollectorRegistry,
    gate: RequestGate | None = None,
) -> web.Application:
    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if api_token and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_token}".encode()):
                return web.json_response(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    # The token first (a refusal costs nothing), then the bound on work at once.
    app = web.Application(middlewares=[bearer] + ([gate.middleware] if gate else []))
    app[JOURNAL_KEY] = journal
    app[HEALTH_KEY] = health
    app[REGISTRY_KEY] = registry
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    # /api/v1/calls is the call log (voicebot/api/calls.py); this is the menu's own table.
    app.router.add_get("/api/v1/categorizations", _categorizations)
    app.router.add_get("/api/v1/webhooks/deliveries", _deliveries)
    return app


async def _healthz(request: web.Request) -> web.Response:
    health = request.app[HEALTH_KEY]
    report = health()  # type: ignore[operator]
    status = 200 if report.get("ok") else 503
    return web.json_response(report, status=status)


async def _metrics(request: web.Request) -> web.Response:
    for refresh in request.app.get(METRICS_REFRESH_KEY, []):
        await refresh()
    body = metrics_text(request.app[REGISTRY_KEY])
    content_type, _, charset = CONTENT_TYPE_LATEST.partition("; charset=")
    return web.Response(body=body, content_type=content_type, charset=charset or "utf-8")


class CategorizationsQuery(QueryModel):
    # Out of range is a 400 naming `limit`, as on every /api/v1 list: a
    # negative LIMIT is "no limit" to SQLite, so it must never get through.
    limit: int = Field(50, ge=1, le=500)
    status: Literal["in_progress", "confirmed", "incomplete"] | None = None


class DeliveriesQuery(QueryModel):
    limit: int = Field(100, ge=1, le=1000)
    status: str | None = None
    webhook_id: str | None = Field(None, max_length=100)


async def _categorizations(request: web.Request) -> web.Response:
    journal = request.app[JOURNAL_KEY]
    query = parse_query(request, CategorizationsQuery)
    rows = await journal.recent(limit=query.limit, status=query.status)
    return web.json_response(
        {
            "categorizations": [
                row.categorized_event() | {"codec": row.codec, "end_reason": row.end_reason}
                for row in rows
            ]
        }
    )


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


async def _deliveries(request: web.Request) -> web.Response:
    journal = request.app[JOURNAL_KEY]
    query = parse_query(request, DeliveriesQuery)
    status = query.status
    if status is not None and status not in STATUS_FILTERS:
        raise refuse(request, 400, f"status: must be one of {', '.join(STATUS_FILTERS)}", "status")
    records = await journal.outbox.deliveries(
        statuses=STATUS_FILTERS[status] if status else None,
        webhook_id=query.webhook_id,
        limit=query.limit,
    )
    times = ("created_at", "next_attempt_at", "last_attempt_at", "delivered_at", "failed_at")
    return web.json_response(
        {
            "deliveries": [
                {**asdict(r), **{name: _iso(getattr(r, name)) for name in times}} for r in records
            ]
        }
    )
