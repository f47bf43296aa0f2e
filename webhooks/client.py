"""One signed POST and what came of it. No retries, no storage here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from webhooks.signing import signed_headers

USER_AGENT = "voicebot-webhooks/1 (Standard Webhooks)"


@dataclass(frozen=True)
class AttemptResult:
    """`status` is the HTTP status, or None when no response came (refused,
    reset, timeout); `error` then says which."""

    status: int | None
    error: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def post_signed(
    session: aiohttp.ClientSession,
    url: str,
    secrets: list[str],
    webhook_id: str,
    body: bytes,
    *,
    timestamp: int,
    timeout_s: float,
    max_response_bytes: int = 4096,
) -> AttemptResult:
    """POST `body` with Standard Webhooks headers. Success is judged by the
    caller; redirects are not followed (a 3xx is an answer, not a success)."""
    headers = signed_headers(secrets, webhook_id, timestamp, body)
    headers["User-Agent"] = USER_AGENT
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                # Read a little so the connection can be reused; a receiver's
                # essay in the response body is not our concern.
                content = await response.content.read(max_response_bytes)
                return AttemptResult(
                    status=response.status,
                    headers=dict(response.headers),
                    body=content,
                    duration_s=time.perf_counter() - started,
                )
    except TimeoutError:
        error = f"timeout after {timeout_s:g}s"
    except aiohttp.ClientConnectorError as exc:
        error = f"connection failed: {exc.os_error or exc}"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except OSError as exc:
        error = f"connection failed: {exc}"
    return AttemptResult(status=None, error=error, duration_s=time.perf_counter() - started)
