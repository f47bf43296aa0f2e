"""`voicebot simulate-call --rtp-ports`: the phone's RTP window is the user's
to choose (a fixed window may be taken on their machine), and a bad one is
one clear line, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("value", ["5-3", "41000", "x-y", "80-90", "41000-70000"])
def test_bad_rtp_ports_is_one_line_and_exit_2(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voicebot", "simulate-call", "--rtp-ports", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--rtp-ports" in done.stderr and "expected LO-HI" in done.stderr
    assert "Traceback" not in done.stderr
