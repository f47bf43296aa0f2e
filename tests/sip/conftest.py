"""Fixtures for SIP tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sipp_runner import Sipp


@pytest.fixture
def sipp(tmp_path: Path):
    runner = Sipp(tmp_path)
    yield runner
    runner.kill()
