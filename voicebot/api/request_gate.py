"""How much HTTP work may run at once beside the calls (issue 6 item 10).

The HTTP API shares the event loop with the media clock, which must tick
every 20 ms for every call. Each request's Python work runs on that loop
between awaits; with 200 clients at once, one turn of the loop ran 200 such
pieces back to back and held the clock up to 1.35 s.

So requests go through one of two lanes, each with a bound on requests in
their handlers and on requests waiting their turn (their sockets are open,
which costs next to nothing); beyond the queue a request is answered at once
with 503 and Retry-After, the way an overloaded HTTP server sheds load, and
counted for /metrics:

- heavy: `GET /api/v1/calls` (up to 500 rows), `/api/v1/reports/*` and the
  dashboard, which read many rows. Computed in worker processes
  (voicebot/api/worker_pool.py), they run `http.api_workers` at a time, one
  per worker; with `api_workers = 0` they run here, `http.api_concurrency`
  at a time.
- light: everything else, above all `POST /api/v1/calls/events`: a PBX's
  missed-call event must never wait behind a storm of report requests, since
  the callback it starts is what the bot is for. `http.api_concurrency` at a
  time.

`/healthz` and `/metrics` are outside the gate: a probe must get its answer
from a busy bot too, and they cost next to nothing.

What it never does: time out a request that waits (the client's own timeout
does), or look at more of a request than the route it matched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Seconds a refused client is asked to wait: about the time the queue drains
#: (and the time a replacement API worker takes to start).
RETRY_AFTER_S = 1
UNGATED = frozenset({"/healthz", "/metrics"})
#: The handlers of heavy reads, as their routes were registered (`mark_heavy`).
HEAVY_KEY = web.AppKey("heavy_handlers", set)


def busy(error: str) -> web.Response:
    """The API's one "retry later" answer: 503 with Retry-After, the error in JSON."""
    return web.json_response(
        {"error": error}, status=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def mark_heavy(app: web.Application, handler: Handler) -> None:
    """Send `handler`'s requests through the heavy lane: said where the route
    is registered, beside the handler that hands its work to the workers."""
    app.setdefault(HEAVY_KEY, set()).add(handler)


def is_heavy(request: web.Request) -> bool:
    """A read of many journal rows (the heavy lane): its route's handler was marked."""
    return request.match_info.handler in request.app.get(HEAVY_KEY, ())


class Lane:
    """At most `concurrency` requests in their handlers, `queue` more waiting."""

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("concurrency must be >= 1 and queue >= 0")
        self.concurrency = concurrency
        self.queue = queue
        self._slots = asyncio.Semaphore(concurrency)
        self.running = 0
        self.waiting = 0
        self.refused = 0  # 503s since start

    async def enter(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._slots.locked() and self.waiting >= self.queue:
            self.refused += 1
            return busy("busy: too many requests at once, retry later")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await handler(request)
        finally:
            self.running -= 1
            self._slots.release()


class RequestGate:
    """The light and heavy lanes; `heavy_concurrency` defaults to `concurrency`."""

    def __init__(self, concurrency: int, queue: int, heavy_concurrency: int | None = None) -> None:
        self.light = Lane(concurrency, queue)
        self.heavy = Lane(heavy_concurrency or concurrency, queue)

    @property
    def refused(self) -> int:
        """503s since start, both lanes (for /metrics)."""
        return self.light.refused + self.heavy.refused

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNGATED:
            return await handler(request)
        lane = self.heavy if is_heavy(request) else self.light
        return await lane.enter(request, handler)
