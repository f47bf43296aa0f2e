"""Running apps for tests/app: `start_app(**sections)` starts one with
app_testkit.app_settings, stopped after the test."""

from __future__ import annotations

from typing import Any

import pytest

from tests.app.app_testkit import StartApp, app_settings
from tests.running_apps import RunningApps
from voicebot.app import VoicebotApp
from voicebot.callbacks.attempt import Dialler
from voicebot.clock import Clock


@pytest.fixture
def start_app(running_apps: RunningApps) -> StartApp:
    async def start(
        *,
        calls: int = 8,
        clock: Clock | None = None,
        dialler: Dialler | None = None,
        **sections: Any,
    ) -> VoicebotApp:
        return await running_apps.start(
            lambda root: app_settings(root, calls, **sections), clock, dialler
        )

    return start


@pytest.fixture
async def app(start_app: StartApp) -> VoicebotApp:
    """A running app with the default settings of app_testkit.app_settings."""
    return await start_app()
