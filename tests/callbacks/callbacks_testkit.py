"""What the callback tests share: settings, an API client of a running app, and
a scripted dialler (the SIP edge)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from voicebot.app import VoicebotApp
from voicebot.callbacks.attempt import AttemptRequest, AttemptResult, Outcome
from voicebot.callbacks.queue import CallbackQueue
from voicebot.settings import CallbackSettings
from webhooks import Endpoint

#: Monday 2026-11-23 10:00 in Kyiv.
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ENDPOINT = Endpoint(url="http://127.0.0.1:9/hooks", secrets=["whsec_dGVzdA=="], events=["*"])


def callback_settings(**changes: Any) -> CallbackSettings:
    base: dict[str, Any] = {
        "enabled": True,
        "targets": ["201", "202"],
        "default_region": "UA",
        "timezone": "Europe/Kyiv",
        "first_delay_s": 60,
        "retry_interval_s": 600,
        "max_attempts": 3,
    }
    base.update(changes)
    return CallbackSettings(**base)


#: Open around the clock, every day: a test that dials now is never outside hours.
ALL_WEEK = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
#: The API token of the apps the callback tests start.
TOKEN = "cb-token"


def callbacks_section(**changes: Any) -> dict[str, Any]:
    """The `callbacks` settings of a running app that may call back at any hour:
    one manager (201), Ukrainian numbers, Kyiv time."""
    return {
        "enabled": True,
        "targets": ["201"],
        "default_region": "UA",
        "timezone": "Europe/Kyiv",
        "working_hours": ALL_WEEK,
        **changes,
    }


def api_session(app: VoicebotApp) -> aiohttp.ClientSession:
    """An HTTP client of the app's API, authorised with TOKEN."""
    return aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{app.http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


QueueFactory = Callable[..., Awaitable[CallbackQueue]]


class ScriptedDialler:
    """The SIP edge, scripted: each attempt returns the next outcome (the last
    one repeats), optionally holding until `release` is set."""

    def __init__(self, *outcomes: AttemptResult, hold: bool = False) -> None:
        self.outcomes = list(outcomes) or [AttemptResult(Outcome.COMPLETED, target="201")]
        self.requests: list[AttemptRequest] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.active = 0
        self.peak = 0
        self.called = asyncio.Event()

    async def attempt(self, request: AttemptRequest) -> AttemptResult:
        self.requests.append(request)
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.called.set()
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        index = min(len(self.requests) - 1, len(self.outcomes) - 1)
        return self.outcomes[index]
