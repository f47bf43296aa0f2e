"""An asyncio RTP endpoint for tests: records what the bot sends, plays a phone.

Why not SIPp for media: SIPp can replay a capture but cannot tell us how the
bot's own RTP behaves (rate, jitter, sequence gaps, frame sizes, source
address) nor react while the call runs.  Put an :class:`RtpProbe` port into the
SDP (``uac_signalling_only.xml``, keys ``rtp_ip``/``rtp_port``) and the test
owns the media leg.

Sending follows what a real phone does, so the bot's receiver is tested the
way production will exercise it:

* one SSRC, sequence numbers continuing across audio and events, RTP
  timestamps from one 8 kHz clock;
* every DTMF press gets the timestamp of its onset (a NEW timestamp per press:
  an RFC 4733 receiver treats equal timestamps as the same press), marker on
  its first packet, durations growing by 160 per 20 ms, the end packet sent 3
  times;
* G.711 silence every 20 ms while :meth:`RtpProbe.send_silence` is active,
  suppressed during an event, sent from the probe's own socket so a bot doing
  symmetric RTP (latching to the source address) sees the probe.

RTP is packed here (``struct``), not imported from voicebot: the harness must
not share bugs with the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from .pcap import DTMF_EVENTS, EVENT_KEYS, SILENCE_BYTE, rfc4733_payload

__all__ = ["ProbeStats", "RtpProbe", "RtpRecord"]

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RtpRecord:
    """One received datagram. ``t`` is ``loop.time()`` at arrival (seconds)."""

    t: float
    addr: Addr
    seq: int
    ts: int
    ssrc: int
    pt: int
    marker: bool
    size: int  # payload bytes (after header/CSRC/extension)
    event: int | None = None
    end: bool = False
    duration: int = 0


@dataclass(frozen=True, slots=True)
class ProbeStats:
    packets: int
    steady_packets: int
    packets_per_s: float
    interarrival_p50_ms: float
    interarrival_p99_ms: float
    interarrival_max_ms: float
    seq_gaps: int  # missing sequence numbers
    seq_duplicates: int
    seq_reordered: int
    sizes: frozenset[int]
    payload_types: frozenset[int]
    ssrcs: frozenset[int]
    sources: frozenset[Addr]
    first_t: float | None = None
    last_t: float | None = None


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def _parse(data: bytes, t: float, addr: Addr, event_pts: set[int]) -> RtpRecord | None:
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    cc = data[0] & 0x0F
    off = 12 + 4 * cc
    if data[0] & 0x10 and len(data) >= off + 4:
        off += 4 + 4 * struct.unpack_from("!H", data, off + 2)[0]
    end_off = len(data) - (data[-1] if data[0] & 0x20 else 0)
    seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
    pt = data[1] & 0x7F
    payload = data[off:end_off]
    event: int | None = None
    end = False
    duration = 0
    if pt in event_pts and len(payload) >= 4:
        event, flags, duration = struct.unpack_from("!BBH", payload)
        end = bool(flags & 0x80)
    return RtpRecord(
        t=t, addr=addr, seq=seq, ts=ts, ssrc=ssrc, pt=pt, marker=bool(data[1] & 0x80),
        size=len(payload), event=event, end=end, duration=duration,
    )  # fmt: skip


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, probe: RtpProbe) -> None:
        self.probe = probe

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.probe._on_datagram(data, (str(addr[0]), int(addr[1])))  # type: ignore[call-overload]

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        self.probe.errors.append(exc)


@dataclass(slots=True)
class _TxState:
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    ts0: int = field(default_factory=lambda: random.getrandbits(31))
    t0: float = 0.0
    first_audio: bool = True
    in_event: bool = False


class RtpProbe:
    """UDP/RTP listener + sender on ``host`` (default 127.0.0.1, free port).

    Use as ``async with RtpProbe() as probe:``; ``probe.port`` goes into SDP.
    ``event_pts``: payload types decoded as RFC 4733 (the bot may answer a
    different number than 101).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, event_pts: tuple[int, ...] = (101,)
    ) -> None:
        self.host = host
        self._req_port = port
        self.event_pts = set(event_pts)
        self.records: list[RtpRecord] = []
        self.non_rtp: list[tuple[float, Addr, bytes]] = []
        self.errors: list[Exception] = []
        self.sent: int = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._port: int | None = None
        self._tx = _TxState()
        self._silence_task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._tx_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> RtpProbe:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Proto(self), local_addr=(self.host, self._req_port)
        )
        self._transport = transport
        self._port = int(transport.get_extra_info("sockname")[1])
        self._tx.t0 = loop.time()
        return self

    async def close(self) -> None:
        await self.stop_silence()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> RtpProbe:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The bound port (still known after close)."""
        assert self._port is not None, "probe not started"
        return self._port

    @property
    def addr(self) -> Addr:
        return (self.host, self.port)

    @property
    def ssrc(self) -> int:
        return self._tx.ssrc

    # ------------------------------------------------------------------ receiving
    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        now = asyncio.get_running_loop().time()
        rec = _parse(data, now, addr, self.event_pts)
        if rec is None:
            self.non_rtp.append((now, addr, data))
        else:
            self.records.append(rec)
        for cond, fut in list(self._waiters):
            if not fut.done() and cond():
                fut.set_result(None)

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``cond()`` holds (checked on every datagram)."""
        if cond():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cond, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.remove(entry)

    async def wait_packets(self, n: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: len(self.records) >= n, timeout)

    async def wait_quiet(self, quiet_s: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until nothing arrived for ``quiet_s`` (e.g. the bot stopped sending)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            last = self.records[-1].t if self.records else self._tx.t0
            if loop.time() - last >= quiet_s:
                return
            await asyncio.sleep(min(quiet_s / 3, 0.05))
        raise TimeoutError(f"RTP still flowing after {timeout}s")

    def clear(self) -> None:
        self.records.clear()
        self.non_rtp.clear()

    def events(self) -> list[RtpRecord]:
        return [r for r in self.records if r.event is not None]

    def dtmf_presses(self) -> list[int]:
        """Event codes of distinct presses: one per (SSRC, RTP timestamp)."""
        seen: set[tuple[int, int]] = set()
        out: list[int] = []
        for r in self.records:
            if r.event is None or (r.ssrc, r.ts) in seen:
                continue
            seen.add((r.ssrc, r.ts))
            out.append(r.event)
        return out

    def dtmf_keys(self) -> str:
        return "".join(EVENT_KEYS.get(e, "?") for e in self.dtmf_presses())

    def stats(self, *, pt: int | None = None, skip_ms: float = 200.0) -> ProbeStats:
        """Stream statistics; rate and inter-arrival over the steady part.

        ``pt``: only this payload type (e.g. 0 for the bot's PCMU prompt);
        ``skip_ms``: leading time excluded from rate/jitter figures (start-up).
        """
        recs = [r for r in self.records if pt is None or r.pt == pt]
        gaps = dups = reorder = 0
        by_ssrc: dict[int, list[RtpRecord]] = {}
        for r in recs:
            by_ssrc.setdefault(r.ssrc, []).append(r)
        for rs in by_ssrc.values():
            seen: set[int] = set()
            highest: int | None = None  # extended
            for r in rs:
                if highest is None:
                    ext = r.seq
                else:
                    cyc = highest & ~0xFFFF
                    cands = (cyc - 0x10000 + r.seq, cyc + r.seq, cyc + 0x10000 + r.seq)
                    ext = min(cands, key=lambda c: abs(c - highest))  # type: ignore[operator]
                if ext in seen:
                    dups += 1
                    continue
                seen.add(ext)
                if highest is not None and ext < highest:
                    reorder += 1
                highest = ext if highest is None else max(highest, ext)
            if seen:
                gaps += (max(seen) - min(seen) + 1) - len(seen)
        steady: list[RtpRecord] = []
        if recs:
            t_start = recs[0].t + skip_ms / 1000.0
            steady = [r for r in recs if r.t >= t_start]
        iat = sorted((b.t - a.t) * 1000.0 for a, b in itertools.pairwise(steady))
        span = steady[-1].t - steady[0].t if len(steady) > 1 else 0.0
        return ProbeStats(
            packets=len(recs),
            steady_packets=len(steady),
            packets_per_s=(len(steady) - 1) / span if span > 0 else 0.0,
            interarrival_p50_ms=_percentile(iat, 0.50),
            interarrival_p99_ms=_percentile(iat, 0.99),
            interarrival_max_ms=iat[-1] if iat else 0.0,
            seq_gaps=gaps,
            seq_duplicates=dups,
            seq_reordered=reorder,
            sizes=frozenset(r.size for r in recs),
            payload_types=frozenset(r.pt for r in recs),
            ssrcs=frozenset(r.ssrc for r in recs),
            sources=frozenset(r.addr for r in recs),
            first_t=recs[0].t if recs else None,
            last_t=recs[-1].t if recs else None,
        )

    # -------------------------------------------------------------------- sending
    def _resolve_dest(self, dest: Addr | None) -> Addr:
        if dest is not None:
            return dest
        if not self.records:
            raise RuntimeError("no dest given and nothing received to latch onto")
        return self.records[0].addr

    def _clock_ts(self) -> int:
        elapsed = asyncio.get_running_loop().time() - self._tx.t0
        return (self._tx.ts0 + int(elapsed * 50) * 160) & 0xFFFFFFFF  # 20 ms grid

    def _send(self, dest: Addr, pt: int, marker: bool, ts: int, payload: bytes) -> None:
        assert self._transport is not None, "probe not started"
        hdr = struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | (pt & 0x7F), self._tx.seq, ts, self._tx.ssrc
        )
        self._tx.seq = (self._tx.seq + 1) & 0xFFFF
        self._transport.sendto(hdr + payload, dest)
        self.sent += 1

    def send_raw(self, data: bytes, dest: Addr | None = None) -> None:
        """Send any datagram (malformed RTP, wrong PT, ...)."""
        assert self._transport is not None, "probe not started"
        self._transport.sendto(data, self._resolve_dest(dest))
        self.sent += 1

    async def send_silence(self, dest: Addr | None = None, payload_type: int = 0) -> None:
        """Start G.711 silence frames every 20 ms (PT 0 PCMU, 8 PCMA) until stopped."""
        await self.stop_silence()
        target = self._resolve_dest(dest)
        frame = bytes([SILENCE_BYTE.get(payload_type, 0xFF)]) * 160

        async def run() -> None:
            loop = asyncio.get_running_loop()
            nxt = loop.time()
            while True:
                if not self._tx.in_event:
                    self._send(target, payload_type, self._tx.first_audio, self._clock_ts(), frame)
                    self._tx.first_audio = False
                nxt += 0.020
                await asyncio.sleep(max(0.0, nxt - loop.time()))

        self._silence_task = asyncio.create_task(run(), name="rtp-probe-silence")

    async def stop_silence(self) -> None:
        task, self._silence_task = self._silence_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def send_dtmf(
        self,
        keys: str,
        dest: Addr | None = None,
        payload_type: int = 101,
        *,
        press_ms: int = 100,
        gap_ms: int = 200,
        volume: int = 10,
    ) -> None:
        """Send RFC 4733 presses in real time (``,`` = 1 s pause); returns when done.

        ``dest`` defaults to the source of the first packet received (symmetric
        RTP). Non-DTMF event codes (e.g. 16): :meth:`send_event`.
        """
        for ch in keys:
            if ch == ",":
                await asyncio.sleep(1.0)
                continue
            code = DTMF_EVENTS.get(ch.upper())
            if code is None:
                raise ValueError(f"not a DTMF key: {ch!r}")
            await self.send_event(code, dest, payload_type, press_ms=press_ms, volume=volume)
            await asyncio.sleep(gap_ms / 1000.0)

    async def send_event(
        self,
        event: int,
        dest: Addr | None = None,
        payload_type: int = 101,
        *,
        press_ms: int = 100,
        volume: int = 10,
    ) -> None:
        """One RFC 4733 press of any event code, with its own onset timestamp."""
        if press_ms < 40 or press_ms % 20:
            raise ValueError("press_ms must be a multiple of 20 and >= 40")
        target = self._resolve_dest(dest)
        loop = asyncio.get_running_loop()
        async with self._tx_lock:
            self._tx.in_event = True
            try:
                onset = self._clock_ts()
                frames = press_ms // 20
                nxt = loop.time()
                for k in range(1, frames + 3):
                    end = k >= frames
                    dur = min(k, frames) * 160
                    self._send(
                        target, payload_type, k == 1, onset,
                        rfc4733_payload(event, end=end, duration=dur, volume=volume),
                    )  # fmt: skip
                    nxt += 0.020
                    await asyncio.sleep(max(0.0, nxt - loop.time()))
            finally:
                self._tx.in_event = False
