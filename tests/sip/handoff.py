"""Test apps written as `async def app(call)`, handed to a `UserAgent`.

The UA hands each incoming call over synchronously and keeps no task for it
(the application owns its calls); these tests' apps are coroutines, so this
runs each one as a task the test module keeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from voicebot.sip.call import IncomingCall

_running: set[asyncio.Task[None]] = set()


def each_call(app: Callable[[IncomingCall], Awaitable[None]]) -> Callable[[IncomingCall], None]:
    def hand_off(call: IncomingCall) -> None:
        task = asyncio.get_running_loop().create_task(app(call))  # type: ignore[arg-type]
        _running.add(task)
        task.add_done_callback(_running.discard)

    return hand_off
