"""Fixtures for SIP tests: a running `UserAgent` with short timers (`make_ua`) and
bare UDP peers (`peers`). The `sipp` runner is the suite's, in tests/conftest.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.sip.handoff import each_call
from tests.sip.udp_peer import UdpPeer
from voicebot.settings import SipSettings
from voicebot.sip.call import IncomingCall
from voicebot.sip.user_agent import UserAgent

T1 = 0.02  # short timers: a finished transaction is gone after 64·T1 = 1.3 s

Handler = Callable[[IncomingCall], Awaitable[None]]


async def nobody(call: IncomingCall) -> None:
    raise AssertionError("the app must not see this call")


@pytest.fixture
async def make_ua() -> AsyncIterator[Callable[..., Awaitable[UserAgent]]]:
    async with contextlib.AsyncExitStack() as running:

        async def make(handler: Handler = nobody, **settings: Any) -> UserAgent:
            ua = UserAgent(SipSettings(bind_port=0, **settings), each_call(handler), t1=T1)
            await ua.start()
            running.push_async_callback(ua.stop)
            return ua

        yield make


@pytest.fixture
def peers() -> AsyncIterator[Callable[[str], UdpPeer]]:
    made: list[UdpPeer] = []

    def make(host: str = "127.0.0.1") -> UdpPeer:
        made.append(UdpPeer(host))
        return made[-1]

    yield make  # type: ignore[misc]
    for peer in made:
        peer.close()
