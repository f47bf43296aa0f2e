"""What the journal's HTTP routes (calls, categories, reports, dashboard)
share, stored once on the aiohttp app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from voicebot.clock import Clock, SystemClock
from voicebot.journal.calls import CallLog
from voicebot.journal.categories import CategoryCatalogue

if TYPE_CHECKING:
    from voicebot.api.worker_pool import WorkerPool


@dataclass(frozen=True)
class JournalApi:
    call_log: CallLog
    catalogue: CategoryCatalogue
    zone: ZoneInfo
    clock: Clock = field(default_factory=SystemClock)
    # The running bot's health (SIP registration, active calls) for the dashboard.
    health: Callable[[], dict[str, Any]] | None = None
    api_token: str | None = None
    language: str = "en"
    # Where the heavy reads (calls list, reports) are computed; None: on the loop.
    workers: WorkerPool | None = None


JOURNAL_API_KEY = web.AppKey("journal_api", JournalApi)


def journal_api(request: web.Request) -> JournalApi:
    return request.app[JOURNAL_API_KEY]
