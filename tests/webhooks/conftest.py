"""Fixtures for the webhooks tests (helpers live in webhooks_testkit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from webhooks_testkit import ScriptedSender

from tests.clock import ManualClock
from tests.ports import free_port
from voicebot.journal.database import open_database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "voicebot.db"


@pytest.fixture
async def conn(db_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """The application's connection (the journal's, in production)."""
    connection = await open_database(db_path)
    yield connection
    await connection.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sender() -> ScriptedSender:
    return ScriptedSender()


@pytest.fixture
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port(udp=False)}/hook"
