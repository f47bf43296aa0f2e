"""Fixtures for SIP tests: the suite's one SIPp runner (tests/sipp_harness)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.sipp_harness.runner import Sipp, SippNotFoundError


@pytest.fixture
def sipp(tmp_path: Path) -> Sipp:
    try:
        return Sipp(workdir=tmp_path / "sipp")
    except SippNotFoundError as missing:
        if os.environ.get("CI"):
            pytest.fail(str(missing))
        pytest.skip(str(missing))
