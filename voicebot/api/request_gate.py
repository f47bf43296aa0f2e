"""How much HTTP work may run at once beside the calls (issue 6 item 10).

The HTTP API shares the event loop with the media clock, which must tick
every 20 ms for every call. Each request's Python work (rows to models, JSON)
runs on that loop between awaits; with 200 clients at once, one turn of the
loop ran 200 such pieces back to back and held the clock up to 1.35 s.

So at most `http.api_concurrency` requests work at a time; up to
`http.api_queue` more wait their turn (their sockets are open, which costs
next to nothing); beyond that a request is answered at once with 503 and
Retry-After, the way an overloaded HTTP server sheds load, and counted for
/metrics. `/healthz` is outside the gate: a probe must get its answer from a
busy bot too, and it costs nothing.

What it never does: time out a request that waits (the client's own timeout
does), or look at what is asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Seconds a refused client is asked to wait: about the time the queue drains.
RETRY_AFTER_S = 1
UNGATED = frozenset({"/healthz", "/metrics"})


class RequestGate:
    """At most `concurrency` requests in their handlers, `queue` more waiting."""

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("concurrency must be >= 1 and queue >= 0")
        self.concurrency = concurrency
        self.queue = queue
        self._slots = asyncio.Semaphore(concurrency)
        self.running = 0
        self.waiting = 0
        self.refused = 0  # 503s since start, for /metrics

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNGATED:
            return await handler(request)
        if self._slots.locked() and self.waiting >= self.queue:
            self.refused += 1
            return web.json_response(
                {"error": "busy: too many requests at once, retry later"},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
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
