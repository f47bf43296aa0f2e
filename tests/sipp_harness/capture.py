"""What the bot sent to a SIPp phone, read off the loopback interface.

SIPp replays a capture (``play_pcap_audio``) but keeps nothing of the RTP it
receives, and its media port is its own, so a test cannot listen there.
``dumpcap`` (from tshark) copies the datagrams off ``lo`` with a BPF filter
into a classic pcap, read back with :func:`tests.sipp_harness.pcap.read_pcap_udp`.
Like ``play_pcap_audio`` it needs root (CAP_NET_RAW).

``tone_pcap`` writes the other half: a G.711 tone as RTP for SIPp to play,
every 20 ms frame different (the amplitude ramps), so a test can tell which
frame arrived where.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import struct
from pathlib import Path

from .pcap import PcapPacket, read_pcap_udp, write_pcap

__all__ = ["LoopbackCapture", "tone_linear", "tone_packets", "tone_pcap"]

START_TIMEOUT_S = 10.0


class LoopbackCapture:
    """``dumpcap -i lo -f BPF`` into ``path`` while the test runs; ``stop()`` gives
    the captured UDP payloads in arrival order."""

    def __init__(self, path: Path, bpf: str) -> None:
        binary = shutil.which("dumpcap")
        if binary is None:
            raise FileNotFoundError("dumpcap (Debian package tshark) is not installed")
        self._argv = [binary, "-i", "lo", "-P", "-q", "-f", bpf, "-w", str(path)]
        self.path = path
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        seen = b""
        async with asyncio.timeout(START_TIMEOUT_S):
            while b"Capturing on" not in seen:
                line = await proc.stderr.readline()
                if not line:
                    raise RuntimeError(f"dumpcap exited before capturing: {seen.decode()!r}")
                seen += line

    async def stop(self) -> list[bytes]:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(START_TIMEOUT_S):
                    await proc.communicate()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return [payload for _, payload in read_pcap_udp(self.path)]


def tone_linear(frequency_hz: float, frames: int) -> list[list[int]]:
    """`frames` 20 ms frames (160 samples, 8 kHz) of a tone whose amplitude ramps."""
    out: list[list[int]] = []
    for i in range(frames):
        peak = 2000 + 12000 * i / max(1, frames - 1)
        out.append(
            [
                int(peak * math.sin(2 * math.pi * frequency_hz * (i * 160 + n) / 8000))
                for n in range(160)
            ]
        )
    return out


def tone_packets(
    payloads: list[bytes],
    *,
    payload_type: int,
    start_ms: float = 0.0,
    ssrc: int = 0x70AE0001,
) -> list[PcapPacket]:
    """RTP carrying `payloads` (already G.711), one per 20 ms from `start_ms`."""
    packets = []
    for i, payload in enumerate(payloads):
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if i == 0 else 0) | payload_type, 1000 + i, 160 * i, ssrc
        )
        packets.append(PcapPacket(t_ms=start_ms + 20.0 * i, payload=header + payload))
    return packets


def tone_pcap(path: Path, payloads: list[bytes], *, payload_type: int) -> Path:
    """`tone_packets` as a capture for ``play_pcap_audio``."""
    return write_pcap(path, tone_packets(payloads, payload_type=payload_type))
