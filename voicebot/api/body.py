"""A heavy read's answer as finished bytes, and the job that computes it
(issue 6 item 10).

`GET /api/v1/calls` and the reports turn up to a thousand journal rows into
models and then JSON or CSV: pure Python, tens of milliseconds a request. The
handler parses and validates the query (its 400s), then hands a `Job` (small,
picklable: the resolved filters or report scope) to `job.body(call_log)`,
either right here on the event loop (`http.api_workers = 0`) or in a worker
process (voicebot/api/worker_pool.py), which sends back the `Body`. Either
way the same function makes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from voicebot.journal.calls import CallLog


@dataclass(frozen=True, slots=True)
class Body:
    """A 200 response's body and what the headers say of it."""

    data: bytes
    content_type: str
    charset: str = "utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, text: str) -> Body:
        return cls(text.encode("utf-8"), "application/json")

    def response(self) -> web.Response:
        return web.Response(
            body=self.data,
            content_type=self.content_type,
            charset=self.charset,
            headers=dict(self.headers) if self.headers else None,
        )


class Job(Protocol):
    """A heavy read, validated: picklable, and computes its `Body` from the
    call log's read connection and its rules (nothing else of the bot)."""

    async def body(self, call_log: CallLog) -> Body: ...
