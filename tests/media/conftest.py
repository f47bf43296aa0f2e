"""RTP fixtures shared by the media tests and the stock-pyVoIP comparisons
(tests/stock imports them): one media clock and a pool on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.ports import LOOPBACK as HOST
from tests.ports import rtp_window
from voicebot.media.clock import MediaClock
from voicebot.media.session import RtpPortPool


@pytest.fixture
async def clock() -> AsyncIterator[MediaClock]:
    clock = MediaClock()
    yield clock
    await clock.stop()


@pytest.fixture
def pool() -> RtpPortPool:
    return RtpPortPool(HOST, *rtp_window())
