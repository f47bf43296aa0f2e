"""What the tests/app tests share: a running app on loopback (started by the
`start_app` fixture in conftest.py, stopped after the test), an HTTP client of
its API, and a JSON read that must succeed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import aiohttp

from tests.ports import rtp_window
from voicebot.app import VoicebotApp
from voicebot.callbacks.attempt import Dialler
from voicebot.clock import Clock
from voicebot.settings import Settings

#: The API token of the apps these tests start (their `http` section's default).
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The journal the report tests count with: unique over 7 days, target 60 s, Kyiv.
KYIV_JOURNAL = {"unique_window_days": 7, "target_min_talk_s": 60, "timezone": "Europe/Kyiv"}


class StartApp(Protocol):
    async def __call__(
        self,
        *,
        calls: int = 8,
        clock: Clock | None = None,
        dialler: Dialler | None = None,
        **sections: Any,
    ) -> VoicebotApp: ...


def app_settings(root: Path, calls: int = 8, **sections: Any) -> Settings:
    """The app in peer mode on loopback: any SIP port, an RTP window for `calls`
    calls, its database under `root`, the API on any port with TOKEN; `sections`
    are further settings sections (an `http` one replaces the API's)."""
    rtp_min, rtp_max = rtp_window(calls=calls)
    return Settings(
        **{
            "sip": {"bind_port": 0, "rtp_port_min": rtp_min, "rtp_port_max": rtp_max},
            "storage": {"database": root / "voicebot.db"},
            "http": {"port": 0, "api_token": TOKEN},
            **sections,
        }
    )


def api_session(app: VoicebotApp, headers: dict[str, str] | None = AUTH) -> aiohttp.ClientSession:
    """An HTTP client of the app's API, authorised with TOKEN unless `headers`
    say otherwise (None: no header)."""
    return aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}", headers=headers)


async def get_json(http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get(path) as response:
        assert response.status == 200, await response.text()
        return await response.json()
