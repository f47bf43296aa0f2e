"""A callback queue on a real SQLite file, with a clock tests move by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.callbacks.callbacks_testkit import ENDPOINT, T0, QueueFactory, callback_settings
from tests.clock import ManualClock
from voicebot.callbacks.config import numbers_from_settings, policy_from_settings
from voicebot.callbacks.queue import CallbackQueue


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def make_queue(tmp_path: Path, clock: ManualClock) -> AsyncIterator[QueueFactory]:
    opened: list[CallbackQueue] = []

    async def make(**changes: Any) -> CallbackQueue:
        s = callback_settings(**changes)
        queue = await CallbackQueue.open(
            tmp_path / "voicebot.db",
            numbers_from_settings(s),
            policy_from_settings(s),
            targets=s.targets,
            order=s.order,
            endpoints=[ENDPOINT],
            clock=clock,
            lease_s=s.lease_s,
        )
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()
