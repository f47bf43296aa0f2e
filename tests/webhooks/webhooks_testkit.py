"""Helpers shared by the webhooks tests: a scripted in-process sender for unit
tests, and a real aiohttp receiver on loopback that verifies every request
with the public `standardwebhooks` library."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from webhooks import AttemptResult, Endpoint

SECRET = "whsec_" + base64.b64encode(b"voicebot-test-secret-0123456789ab").decode()
SECRET_2 = "whsec_" + base64.b64encode(b"voicebot-rotated-secret-abcdefgh").decode()


@dataclass
class SentRequest:
    url: str
    webhook_id: str
    body: bytes
    timestamp: int


class ScriptedSender:
    """Stands in for HTTP in unit tests: answers from a per-URL script of
    AttemptResults (the last one repeats) and records every request."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[AttemptResult]] = {}
        self.sent: list[SentRequest] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}

    def answer(self, url: str, *results: AttemptResult) -> None:
        self.scripts[url] = list(results)

    async def __call__(
        self, endpoint: Endpoint, webhook_id: str, body: bytes, timestamp: int, timeout: float
    ) -> AttemptResult:
        url = endpoint.url
        self.sent.append(SentRequest(url, webhook_id, body, timestamp))
        self.in_flight[url] = self.in_flight.get(url, 0) + 1
        self.max_in_flight[url] = max(self.max_in_flight.get(url, 0), self.in_flight[url])
        try:
            if url in self.gates:
                await self.gates[url].wait()
            script = self.scripts.get(url) or [AttemptResult(status=200)]
            return script.pop(0) if len(script) > 1 else script[0]
        finally:
            self.in_flight[url] -= 1


@dataclass
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float


class Receiver:
    """A CRM stand-in. `mode`: ok | 500 | hang | 410 | 429 | 503; `script`
    holds modes consumed one per request before falling back to `mode`."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.mode = "ok"
        self.script: list[str] = []
        self.retry_after = "1"
        self.received: list[Received] = []
        self.arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.received if r.verified]

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._release.clear()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(set(self.ids)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"received {len(set(self.ids))} of {count}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.05)

    def events(self, event_type: str) -> list[dict[str, Any]]:
        """The verified deliveries of `event_type`, as parsed bodies, in arrival order."""
        bodies = [json.loads(r.body) for r in self.received if r.verified]
        return [body for body in bodies if body["type"] == event_type]

    async def wait_for_event(self, event_type: str, timeout: float = 5.0) -> None:
        """Return once a verified `event_type` delivery has arrived."""
        deadline = time.monotonic() + timeout
        while not self.events(event_type):
            if time.monotonic() > deadline:
                raise AssertionError(f"no verified {event_type} within {timeout} s")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.05)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        verified = False
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified = True
                break
            except WebhookVerificationError:
                continue
        self.received.append(
            Received(headers.get("webhook-id", ""), headers, body, verified, time.monotonic())
        )
        self.arrived.set()
        if not verified:
            return web.Response(status=400, text="bad signature")
        mode = self.script.pop(0) if self.script else self.mode
        if mode == "hang":
            await self._release.wait()
            return web.Response(status=500, text="released")
        if mode in ("429", "503"):
            return web.Response(status=int(mode), headers={"Retry-After": self.retry_after})
        if mode == "ok":
            return web.json_response({"ok": True})
        return web.Response(status=int(mode), text=f"mode {mode}")
