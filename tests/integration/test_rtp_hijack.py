"""Issue 6 item 1, end to end: a stranger sprays valid RTP at the bot's RTP
ports before the manager's phone sends its first packet. The manager's keys
(SIPp replaying RFC 4733 from 127.0.0.1, the SDP address) must still win."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.integration.conftest import MakeBot, finished, needs_raw, needs_sipp, target, wait_rows
from tests.integration.keyed_call import CALLER, KEYS, SIPP_TIMEOUT_S, assert_confirmed_3_1500
from tests.ports import rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp, scenario_path
from voicebot.app import VoicebotApp
from voicebot.media.telephone_event import DtmfSender

pytestmark = [pytest.mark.sipp, needs_sipp, needs_raw]

ATTACKER_IP = "127.0.0.2"
ATTACKER_KEYS = "9#0#1"


def late_media_scenario(path: Path, pause_ms: int) -> Path:
    """uac_dtmf with a pause between the ACK and the first RTP packet: SIPp
    replays a pcap from its first packet on, so a lead-in inside the pcap
    does not delay the phone's media; a real phone often starts late."""
    xml = scenario_path("uac_dtmf").read_text(encoding="iso-8859-1")
    marker = "  <nop>\n    <action>\n      <exec play_pcap_audio"
    assert marker in xml, "uac_dtmf.xml changed: update the pause insertion"
    path.write_text(
        xml.replace(marker, f'  <pause milliseconds="{pause_ms}"/>\n' + marker, 1),
        encoding="iso-8859-1",
    )
    return path


def attack_packets() -> list[bytes]:
    """A whole keyed entry (RFC 4733, in sequence, one SSRC): what a hijacker would send."""
    sender = DtmfSender(101, ssrc=0xBAD)
    packets: list[bytes] = []
    seq, timestamp = 1, 8000
    for key in ATTACKER_KEYS:
        for packet, _ in sender.packets(key, seq, timestamp):
            packets.append(bytes(packet))
            seq += 1
        timestamp += 1600
    return packets


async def spray(app: VoicebotApp, ports: list[int], after_answer_s: float) -> int:
    """Send the attack to every even port of the bot's range, over and over,
    until `after_answer_s` after the bot answered (the phone waits 1.5 s)."""
    packets = attack_packets()
    sent = 0
    loop = asyncio.get_running_loop()
    answered_at: float | None = None
    deadline = loop.time() + SIPP_TIMEOUT_S
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ATTACKER_IP, 0))
        while loop.time() < deadline:
            if answered_at is None and app.counters.answered:
                answered_at = loop.time()
            if answered_at is not None and loop.time() - answered_at > after_answer_s:
                return sent
            for port in ports:
                for data in packets:
                    sock.sendto(data, ("127.0.0.1", port))
                    sent += 1
            await asyncio.sleep(0.05)
    return sent


async def test_rtp_sprayed_from_a_stranger_before_the_phone_does_not_take_the_call(
    make_bot: MakeBot, tmp_path: Path
) -> None:
    low, high = rtp_window(calls=2, slack=2)  # 4 even ports: the attacker covers them all
    bot = await make_bot(sip={"rtp_port_min": low, "rtp_port_max": high})
    pcap = write_dtmf_pcap(tmp_path / "keys.pcap", KEYS, lead_in_ms=200, gap_ms=250)
    scenario = late_media_scenario(tmp_path / "uac_dtmf_late.xml", pause_ms=1500)
    sipp = Sipp(workdir=tmp_path / "sipp")
    attack = asyncio.create_task(spray(bot, list(range(low, high + 1, 2)), after_answer_s=1.2))
    result = await sipp.arun_scenario(
        scenario,
        target(bot),
        keys={**CALLER, "pcap": pcap},
        timeout_s=SIPP_TIMEOUT_S,
        trace_msg=True,
    )
    sent = await attack
    assert sent > 0
    assert result.ok and result.successful_calls == 1, result.describe()
    (row,) = await wait_rows(bot, finished)
    assert_confirmed_3_1500(row)
    assert row["digits"] == KEYS
    assert bot.counters.rtp_refused > 0  # the attack reached the call's port and was refused
