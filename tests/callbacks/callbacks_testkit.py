"""What the callback tests share: settings, a scripted dialler (the SIP edge),
and a poll-with-deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

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


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `check` until it holds, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)
