"""The dashboard at `/` on a real app: login with the API token and the
session cookie it sets, escaping of what users typed, the three languages,
and a headless Chromium (Debian's, driven by playwright) that logs in, reads
the numbers off the page, compares them with the report endpoints, and saves
screenshots at desktop width and at 390 px (a phone)."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.app.app_testkit import TOKEN, StartApp, api_session, get_json
from tests.app.known_calls import C, start_with_known_calls
from tests.clock import ManualClock
from voicebot.api.dashboard import SESSION_COOKIE, session_valid
from voicebot.app import VoicebotApp
from voicebot.callbacks.attempt import AttemptRequest, AttemptResult, Outcome
from voicebot.callbacks.queue import JobFilter

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Sunday 2026-10-25 17:00 in Kyiv: "today" is the DST day of the report tests,
# "this week" runs from Monday 2026-10-19.
NOW = datetime.fromisoformat("2026-10-25T15:00:00+00:00")


class NobodyAnswers:
    """The dialler's seam (voicebot/callbacks/attempt.py) where no phone rings:
    on a Sunday evening outside working hours the scheduler never calls it."""

    async def attempt(self, request: AttemptRequest) -> AttemptResult:
        return AttemptResult(Outcome.NO_MANAGER, detail="test: nobody answers")


@pytest.fixture
async def seeded(start_app: StartApp) -> VoicebotApp:
    return await start_with_known_calls(
        start_app,
        clock=ManualClock(NOW),
        dialler=NobodyAnswers(),
        ivr={"language": "uk"},
        callbacks={"enabled": True, "targets": ["201"], "default_region": "UA",
                   "timezone": "Europe/Kyiv"},
    )  # fmt: skip


def browser_session(app: VoicebotApp) -> aiohttp.ClientSession:
    # unsafe=True: keep cookies for a bare IP host, as a browser does.
    return aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{app.http_port}", cookie_jar=aiohttp.CookieJar(unsafe=True)
    )


async def test_login_sets_a_strict_httponly_session(seeded: VoicebotApp) -> None:
    async with browser_session(seeded) as browser:
        async with browser.get("/", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/login"
        async with browser.post("/login", data={"token": "nope"}) as response:
            assert response.status == 401
        async with browser.post("/login", data={"token": TOKEN}, allow_redirects=False) as response:
            assert response.status == 303
            cookie = response.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert TOKEN not in cookie.value and session_valid(TOKEN, cookie.value)
        async with browser.get("/") as response:
            assert response.status == 200
            page = await response.text()
            assert "script-src" not in response.headers["Content-Security-Policy"]
        assert 'data-metric="missed-today">4<' in page
        assert "Пропущені" in page  # ivr.language is uk
        async with browser.get("/?lang=ru") as response:
            assert "Пропущенные" in await response.text()
        async with browser.get("/") as response:
            assert "Пропущенные" in await response.text()  # the choice is remembered
        async with browser.post("/logout", allow_redirects=False) as response:
            assert response.status == 303
        async with browser.get("/", allow_redirects=False) as response:
            assert response.status == 303


async def test_forged_or_stale_cookie_is_refused(seeded: VoicebotApp) -> None:
    stale = "1000000000." + "0" * 64
    for value in (stale, "garbage", "9" * 40 + ".x"):
        async with browser_session(seeded) as browser:
            browser.cookie_jar.update_cookies({SESSION_COOKIE: value})
            async with browser.get("/", allow_redirects=False) as response:
                assert response.status == 303, value


async def test_call_back_now_needs_the_forms_csrf_token(seeded: VoicebotApp) -> None:
    async with browser_session(seeded) as browser:
        await browser.post("/login", data={"token": TOKEN})
        async with browser.get("/") as response:
            page = await response.text()
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        base = f"http://127.0.0.1:{seeded.http_port}"
        for form, headers in (
            ({"number": C}, {}),  # no token
            ({"number": C, "csrf": "0" * 64}, {}),  # a forged one
            ({"number": C, "csrf": csrf}, {"Origin": "http://evil.example"}),
        ):
            async with browser.post(
                "/callbacks", data=form, headers=headers, allow_redirects=False
            ) as response:
                assert response.status == 403, (form, headers)
        async with browser.post(
            "/callbacks", data={"number": "12", "csrf": csrf}, headers={"Origin": base},
            allow_redirects=False,
        ) as response:  # fmt: skip
            assert response.status == 303
            assert response.headers["Location"] == "/?refused=number#unprocessed"
    assert seeded.callback_queue is not None
    jobs, _ = await seeded.callback_queue.list(JobFilter(), 50, None)
    assert C not in [job.client_number for job in jobs]  # nothing was queued
    # Signed out, the form is a redirect to the login, whatever it carries.
    async with (
        browser_session(seeded) as stranger,
        stranger.post(
            "/callbacks", data={"number": C, "csrf": csrf}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 303 and response.headers["Location"] == "/login"


async def test_what_users_typed_is_escaped(seeded: VoicebotApp) -> None:
    assert seeded.categories is not None
    await seeded.categories.update("2", "<script>alert(1)</script>", None, spam=False)
    async with browser_session(seeded) as browser:
        await browser.post("/login", data={"token": TOKEN})
        async with browser.get("/") as response:
            page = await response.text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason="chromium not installed"
)


@needs_chromium
async def test_browser_logs_in_and_the_page_matches_the_reports(
    seeded: VoicebotApp, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    base = f"http://127.0.0.1:{seeded.http_port}"
    async with api_session(seeded) as api:
        today = await get_json(api, "/api/v1/reports/missed?from=2026-10-25&to=2026-10-25")
        week = await get_json(api, "/api/v1/reports/missed?from=2026-10-19&to=2026-10-25")
        categories = await get_json(api, "/api/v1/reports/categories?from=2026-10-19&to=2026-10-25")
        summary = await get_json(api, "/api/v1/reports/summary?from=2026-10-19&to=2026-10-25")
        hourly = await get_json(api, "/api/v1/reports/hourly?from=2026-10-19&to=2026-10-25")

    artifacts = tmp_path / "screenshots"
    artifacts.mkdir()
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            for width, height in ((1280, 900), (390, 844)):
                context = await browser.new_context(
                    viewport={"width": width, "height": height}, locale="uk-UA"
                )
                page = await context.new_page()
                await page.goto(base + "/")
                assert page.url.endswith("/login")
                await page.fill("#token", TOKEN)
                await page.click("button[type=submit]")
                await page.wait_for_url(base + "/")

                async def metric(name: str, page: Any = page) -> int:
                    text = await page.text_content(f'[data-metric="{name}"]')
                    return int(text.strip())

                assert await metric("missed-today") == today["missed"] == 4
                assert await metric("unprocessed-today") == today["unprocessed"] == 2
                assert await metric("missed-week") == week["missed"]
                assert await metric("unprocessed-week") == week["unprocessed"]
                rows = await page.query_selector_all("#categories tr[data-code]")
                shown = []
                for row in rows:
                    code = await row.get_attribute("data-code")
                    manager = await row.get_attribute("data-manager")
                    calls = await (await row.query_selector('[data-metric="calls"]')).text_content()
                    value = await (await row.query_selector('[data-metric="value"]')).text_content()
                    shown.append((code, manager or None, int(calls), float(value)))
                assert shown == [
                    (r["code"], r["manager"], r["calls"], r["value_sum"])
                    for r in categories["by_manager"]
                ]
                inbound = summary["directions"][0]
                row = page.locator('tr[data-direction="inbound"] [data-metric="calls"]')
                assert int(await row.text_content()) == inbound["calls"]
                cells = await page.query_selector_all("svg.heat rect[data-count]")
                drawn = [int(await c.get_attribute("data-count")) for c in cells]
                assert drawn == [n for day in hourly["calls"] for n in day]
                # "Call back now" on C's busy call (the one unprocessed call with a
                # number; the anonymous one has no button) queues a real job.
                assert await page.locator("#callbacks-off").count() == 0
                buttons = page.locator('button[data-action="call-back"]')
                assert await buttons.count() == 1
                assert await buttons.first.get_attribute("data-number") == C
                await buttons.first.click()
                await page.wait_for_selector("#callback-queued")
                job_id = int(await page.get_attribute("#callback-queued", "data-callback-id"))
                async with api_session(seeded) as api:
                    listed = await get_json(
                        api, f"/api/v1/callbacks?number={C.replace('+', '%2B')}"
                    )
                job = next(j for j in listed["callbacks"] if j["id"] == job_id)
                assert (job["client_number"], job["state"], job["source"]) == (C, "queued", "api")
                # Monday 09:00 in Kyiv: Sunday evening is outside working hours.
                assert job["due_at"] == "2026-10-26T07:00:00Z"
                overflow = await page.evaluate(
                    "document.scrollingElement.scrollWidth - window.innerWidth"
                )
                offenders = await page.evaluate(
                    """() => [...document.querySelectorAll('body *')]
                        .filter(e => !e.closest('.scroll')
                                && e.getBoundingClientRect().right > window.innerWidth)
                        .map(e => e.tagName + '.' + e.getAttribute('class'))"""
                )
                assert overflow <= 0, f"page scrolls sideways at {width} px: {offenders}"
                shot = artifacts / f"dashboard-{width}.png"
                await page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                await context.close()
        finally:
            await browser.close()
    print(f"screenshots: {artifacts}")
