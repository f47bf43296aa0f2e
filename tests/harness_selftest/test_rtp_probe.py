"""Self-tests of tests.sipp_harness.rtp_probe: probe-to-probe DTMF and stream stats."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.sipp_harness.rtp_probe import RtpProbe


async def test_send_dtmf_decoded_by_another_probe() -> None:
    async with RtpProbe() as tx, RtpProbe() as rx:
        await tx.send_dtmf("1500", rx.addr, press_ms=60, gap_ms=40)
        await rx.wait_for(lambda: sum(1 for r in rx.records if r.end) >= 12, timeout=2)
    assert rx.dtmf_keys() == "1500"
    ev = rx.events()
    assert len({r.ts for r in ev}) == 4  # new timestamp per press
    assert sum(r.marker for r in ev) == 4
    assert sum(r.end for r in ev) == 12
    assert {r.addr for r in ev} == {tx.addr}  # sent from the probe's own socket
    st = rx.stats()
    assert st.seq_gaps == 0 and st.seq_duplicates == 0 and st.ssrcs == {tx.ssrc}


@pytest.mark.alone
async def test_silence_stream_stats_and_event_suppresses_audio() -> None:
    async with RtpProbe() as tx, RtpProbe() as rx:
        await tx.send_silence(rx.addr)
        await asyncio.sleep(0.3)
        await tx.send_dtmf("9", rx.addr, press_ms=60, gap_ms=0)
        await asyncio.sleep(0.3)
        await tx.stop_silence()
        await asyncio.sleep(0.05)
    audio = rx.stats(pt=0, skip_ms=60)
    assert audio.sizes == {160}
    assert 40 <= audio.packets_per_s <= 60
    assert 15 <= audio.interarrival_p50_ms <= 25
    assert rx.dtmf_keys() == "9"
    allst = rx.stats()
    assert allst.seq_gaps == 0  # one seq space for audio + events
    ev_t = [r.t for r in rx.events()]
    audio_t = [r.t for r in rx.records if r.pt == 0]
    assert not any(ev_t[0] < t < ev_t[-1] for t in audio_t)
    # audio timestamps advance 160 per 20 ms frame
    ts = [r.ts for r in rx.records if r.pt == 0][:5]
    assert all((b - a) % 160 == 0 and b > a for a, b in itertools.pairwise(ts))


async def test_stats_count_gaps_duplicates_and_latch() -> None:
    import struct

    def pkt(seq: int) -> bytes:
        return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xABC) + b"\xff" * 160

    async with RtpProbe() as tx, RtpProbe() as rx:
        for seq in (65534, 65535, 1, 1, 2):  # wrap, one lost (0), one duplicate
            tx.send_raw(pkt(seq), rx.addr)
        await rx.wait_packets(5, timeout=2)
        st = rx.stats()
        assert (st.seq_gaps, st.seq_duplicates) == (1, 1)
        # reply goes to the latched source (symmetric RTP)
        await rx.send_dtmf("5", press_ms=40, gap_ms=0)
        await tx.wait_for(lambda: sum(r.end for r in tx.records) >= 3, timeout=2)
        assert tx.dtmf_keys() == "5"
