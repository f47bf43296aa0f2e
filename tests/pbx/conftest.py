"""A real Asterisk for each tests/pbx test, stopped after it, and the free
ports of the parties around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.pbx.asterisk import Asterisk, asterisk_prefix
from tests.pbx.recipe import Ports


@pytest.fixture
async def asterisk(tmp_path: Path) -> AsyncIterator[Asterisk]:
    pbx = Asterisk(asterisk_prefix(), tmp_path / "asterisk")
    yield pbx
    await pbx.stop()


@pytest.fixture
def ports() -> Ports:
    return Ports.free()
