"""SIPp end to end: the scenarios and the pcap path, against a SIPp UAS stand-in.

The bot is not needed: ``uas_answer_bye.xml`` (here) answers with an SDP that
points at an RtpProbe, so whatever SIPp's ``play_pcap_audio`` replays lands in
the probe and is decoded there.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.rtp_probe import RtpProbe
from tests.sipp_harness.runner import (
    Sipp,
    SippResult,
    build_info_scenario,
    can_play_pcap,
)

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed"),
]

UAS = Path(__file__).with_name("uas_answer_bye.xml")
KEYS = {"pbx_call_id": "pbx-42", "client_number": "79001234567", "manager": "ivanov"}


async def _call(
    sipp: Sipp,
    scenario: str | Path,
    *,
    probe_port: int,
    bye_after_ms: int,
    uac_keys: dict[str, object],
    timeout_s: float = 12,
) -> tuple[SippResult, SippResult]:
    """Start the UAS stand-in, then the UAC scenario at it; both results."""
    uas = await sipp.start(
        UAS, None, timeout_s=timeout_s, trace_msg=True,
        keys={"probe_ip": "127.0.0.1", "probe_port": probe_port, "bye_after_ms": bye_after_ms},
        extra_args=["-aa"],
    )  # fmt: skip
    await uas.listening()
    uac = await sipp.arun_scenario(
        scenario, f"127.0.0.1:{uas.local_port}", keys={**KEYS, **uac_keys},
        timeout_s=timeout_s, trace_msg=True,
    )  # fmt: skip
    return uac, await uas.wait()


@pytest.mark.alone
@pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)")
async def test_uac_dtmf_pcap_replayed_into_probe(tmp_path: Path) -> None:
    sipp = Sipp()
    pcap = write_dtmf_pcap(tmp_path / "d1500.pcap", "1500", lead_in_ms=200)
    async with RtpProbe() as probe:
        uac, uas = await _call(
            sipp, "uac_dtmf", probe_port=probe.port, bye_after_ms=2500,
            uac_keys={"pcap": pcap},
        )  # fmt: skip
    assert uac.ok and uac.successful_calls == 1, uac.describe()
    assert uas.ok, uas.describe()
    assert not uac.real_errors, uac.describe()
    assert probe.dtmf_keys() == "1500"
    ev = probe.events()
    assert sum(r.marker for r in ev) == 4 and sum(r.end for r in ev) == 12
    # sent from SIPp's -mi/-mp, i.e. the address the INVITE's SDP offered
    assert {r.addr for r in probe.records} == {("127.0.0.1", uac.media_port)}
    st = probe.stats(skip_ms=0)
    assert st.seq_gaps == 0
    # replay keeps the capture's 20 ms pacing
    assert 15 <= st.interarrival_p50_ms <= 25
    # the INVITE carried the bot's headers and the offer
    invite = uas.messages_log_text
    for needle in (
        "X-Call-ID: pbx-42",
        "X-Client-Number: 79001234567",
        "X-Manager: ivanov",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        f"m=audio {uac.media_port} RTP/AVP 0 101",
    ):
        assert needle in invite, needle


async def test_info_hangup_silence_signalling_only(tmp_path: Path) -> None:
    """The other four UAC scenarios, run concurrently to keep the suite short."""
    sipp = Sipp()
    info_xml = tmp_path / "uac_info_15.xml"
    build_info_scenario("1#5", pause_ms=100, lead_in_ms=100, path=info_xml)
    async with RtpProbe() as probe, RtpProbe() as media:
        results = await asyncio.gather(
            _call(sipp, info_xml, probe_port=probe.port, bye_after_ms=1500,
                  uac_keys={"codec_pt": 8, "codec_name": "PCMA"}),
            # caller hangs up at 500 ms, UAS would only BYE after 60 s
            _call(sipp, "uac_hangup", probe_port=probe.port, bye_after_ms=60000,
                  uac_keys={"pcap": write_dtmf_pcap(tmp_path / "empty.pcap", ""),
                            "hangup_after_ms": 500}),
            _call(sipp, "uac_silence", probe_port=probe.port, bye_after_ms=800, uac_keys={}),
            # bot (UAS) hangs up first: the caller's global BYE handler answers
            _call(sipp, "uac_signalling_only", probe_port=probe.port, bye_after_ms=700,
                  uac_keys={"rtp_port": media.port, "hangup_after_ms": 60000}),
            # caller hangs up first
            _call(sipp, "uac_signalling_only", probe_port=probe.port, bye_after_ms=60000,
                  uac_keys={"rtp_port": media.port, "hangup_after_ms": 400}),
        )  # fmt: skip
    for uac, uas in results:
        assert uac.ok, uac.describe()
        assert uas.ok, uas.describe()
    (info, info_uas), (hang, _), (_sil, _), (so_bot, _so_bot_uas), (so_me, _) = results
    signals = [ln.strip() for ln in info_uas.messages_log_text.splitlines()
               if ln.startswith("Signal=")]  # fmt: skip
    assert signals == ["Signal=1", "Signal=#", "Signal=5"]
    assert "Content-Type: application/dtmf-relay" in info_uas.messages_log_text
    assert "a=rtpmap:8 PCMA/8000" in info.messages_log_text
    assert "CSeq: 2 BYE" in hang.messages_log_text  # the caller's BYE
    assert f"c=IN IP4 127.0.0.1\nt=0 0\nm=audio {media.port} " in so_bot.messages_log_text
    assert "CSeq: 1 BYE" in so_bot.messages_log_text and "CSeq: 2 BYE" not in (
        so_bot.messages_log_text
    )
    assert "CSeq: 2 BYE" in so_me.messages_log_text


def test_sync_runner_reports_failures() -> None:
    sipp = Sipp()
    # a missing [key] is a fatal scenario error
    res = sipp.run_scenario("uac_dtmf", "127.0.0.1:9", timeout_s=3)
    assert not res.ok and res.successful_calls == 0 and not res.stats
    assert 'play_pcap_audio "[pcap]"' in res.stderr, res.describe()
    # nobody answers: SIPp's own -timeout ends it, not Python's kill
    port = free_port()
    res = sipp.run_scenario("uac_silence", f"127.0.0.1:{port}", timeout_s=2)
    assert not res.ok and not res.timed_out
    assert res.successful_calls == 0
