"""RTP fixtures shared by the media tests and the stock-pyVoIP comparisons
(tests/stock imports them): one media clock and a pool on free loopback ports."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from voicebot.media.clock import MediaClock
from voicebot.media.session import RtpPortPool

HOST = "127.0.0.1"


def free_even_range(count: int = 12) -> tuple[int, int]:
    """`count` even ports starting near one the kernel just handed out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    start = port - port % 2
    if start + 2 * count > 65535:
        start -= 4 * count
    return start, start + 2 * count - 1


@pytest.fixture
async def clock() -> AsyncIterator[MediaClock]:
    clock = MediaClock()
    yield clock
    await clock.stop()


@pytest.fixture
def pool() -> RtpPortPool:
    return RtpPortPool(HOST, *free_even_range())
