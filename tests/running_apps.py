"""Apps a test starts, each under a directory of its own, all stopped after the
test (the `running_apps` fixture in tests/conftest.py): the one place tests
start a `VoicebotApp` in the test's event loop and make sure it stops."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from voicebot.app import VoicebotApp
from voicebot.callbacks.attempt import Dialler
from voicebot.clock import Clock
from voicebot.settings import Settings


class RunningApps:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.apps: list[VoicebotApp] = []
        self._made = itertools.count()

    async def start(
        self,
        settings: Callable[[Path], Settings],
        clock: Clock | None = None,
        dialler: Dialler | None = None,
    ) -> VoicebotApp:
        """Start an app with `settings(directory)`, the directory its own."""
        app = VoicebotApp(
            settings(self.root / f"bot{next(self._made)}"), clock=clock, dialler=dialler
        )
        await app.start()
        self.apps.append(app)
        return app

    async def stop(self) -> None:
        """Stop every app started, the last first."""
        while self.apps:
            await self.apps.pop().stop()
