"""A category added through the API is heard on the very next menu call, with
no restart, and the finished call is in the call log (GET /api/v1/calls) on
the PBX call the PBX reported, by X-Call-ID."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp

from tests.integration.conftest import MakeBot, finished, target, wait_rows
from voicebot.softphone import KeyingStyle, place_call

QUICK = KeyingStyle(listen_s=0.8, timeout_s=40)


async def test_category_added_by_api_is_keyed_on_the_next_call(make_bot: MakeBot) -> None:
    bot = await make_bot()  # no http.api_token: loopback only, no bearer needed
    base = f"http://127.0.0.1:{bot.http_port}"
    async with aiohttp.ClientSession(base_url=base) as http:
        before = await place_call(target(bot), "7#1##1", style=QUICK)
        assert "unknown_category" in before.heard  # 7 is not a code yet
        await wait_rows(bot, finished)

        async with http.post(
            "/api/v1/categories", json={"code": "7", "name": "callback asked", "value": 250}
        ) as response:
            assert response.status == 201
        now = datetime.now(UTC)
        async with http.post(
            "/api/v1/calls/events",
            json={
                "call_id": "pbx-live-1",
                "direction": "inbound",
                "caller": "+380671112233",
                "callee": "+380440000000",
                "status": "answered",
                "started_at": (now - timedelta(minutes=3)).isoformat(),
                "answered_at": (now - timedelta(minutes=2, seconds=50)).isoformat(),
                "ended_at": now.isoformat(),
                "manager": "201",
            },
        ) as response:
            assert response.status == 201

        after = await place_call(
            target(bot), "7##1", headers={"X-Call-ID": "pbx-live-1"}, style=QUICK
        )
        assert "unknown_category" not in after.heard
        rows = await wait_rows(bot, lambda rows: finished(rows, 2))
        assert rows[-1]["category_code"] == "7" and rows[-1]["value"] == "250"

        deadline = time.monotonic() + 5
        while True:
            async with http.get("/api/v1/calls?number=%2B380671112233") as response:
                calls = (await response.json())["calls"]
            if calls and calls[0]["category"] is not None:
                break
            assert time.monotonic() < deadline, calls
            await asyncio.sleep(0.05)
        (call,) = calls
        assert call["pbx_call_id"] == "pbx-live-1" and call["source"] == "pbx"
        assert call["category"] == {"code": "7", "name": "callback asked"}
        assert call["value"] == 250 and call["talk_s"] == 170.0
