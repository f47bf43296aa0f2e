"""Whole calls keyed with tones in the audio (in-band DTMF), over SIPp.

SIPp replays a pcap of a phone's continuous G.711 audio (50 packets/s)
carrying the keys as DTMF tones, generated here: 100 ms tones at -10 dBm0
per tone with 250 ms between presses, so the two 0s of 1500 are two presses.
The dual-mode pcap sends the same presses as RFC 4733 events beside that
audio, as a phone in dual DTMF mode does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.integration.conftest import MakeBot, finished, needs_raw, needs_sipp, target
from tests.integration.conftest import wait_rows as wait_journal_rows
from tests.integration.keyed_call import CALLER, KEYS, SIPP_TIMEOUT_S, assert_confirmed_3_1500
from tests.media.dtmf_signals import dtmf, g711_encode, silence
from tests.sipp_harness.pcap import build_audio_packets, write_pcap
from tests.sipp_harness.runner import Sipp
from voicebot.app import VoicebotApp
from voicebot.media.g711 import PCMA, PCMU, Codec
from voicebot.media.inband_dtmf import FRAME

pytestmark = [pytest.mark.sipp, needs_sipp, needs_raw]

TONE_MS, GAP_MS, LEAD_IN_MS, TAIL_MS = 100, 250, 1500, 3000
FRAME_MS = 20


def write_keyed_audio_pcap(
    path: Path, codec: Codec, *, dual_mode: bool = False, lead_in_ms: int = LEAD_IN_MS
) -> Path:
    """KEYS as tones in `codec` audio, the first `lead_in_ms` in; with `dual_mode`,
    also as RFC 4733 (pt 101)."""
    parts = [silence(lead_in_ms)]
    presses = []
    at_ms = lead_in_ms
    for key in KEYS:
        parts += [dtmf(key, TONE_MS, dbm0=-10), silence(GAP_MS)]
        presses.append((at_ms // FRAME_MS, key, TONE_MS // FRAME_MS))
        at_ms += TONE_MS + GAP_MS
    parts.append(silence(TAIL_MS))
    audio = g711_encode(np.concatenate(parts), codec)
    payloads = [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]
    packets = build_audio_packets(
        payloads,
        audio_payload_type=codec.payload_type,
        presses=presses if dual_mode else (),
    )
    return write_pcap(path, packets)


async def keyed_call(sipp: Sipp, bot: VoicebotApp, pcap: Path, scenario: str, codec: Codec) -> None:
    result = await sipp.arun_scenario(
        scenario,
        target(bot),
        keys={**CALLER, "pcap": pcap, "codec_pt": codec.payload_type, "codec_name": codec.name},
        timeout_s=SIPP_TIMEOUT_S,
        trace_msg=True,
    )
    assert result.ok and result.successful_calls == 1, result.describe()
    if scenario.startswith("uac_inband"):
        assert "telephone-event" not in result.messages_log_text  # neither offered nor answered


async def keys_metric(bot: VoicebotApp) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{bot.http_port}/metrics") as response,
    ):
        text = await response.text()
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("voicebot_keys_total{")
    }


@pytest.mark.parametrize("codec", [PCMU, PCMA], ids=lambda c: c.name)
async def test_tones_only_phone_gets_a_confirmed_row(
    make_bot: MakeBot, sipp: Sipp, tmp_path: Path, codec: Codec
) -> None:
    """No telephone-event in the SDP: the keys, tones in the audio, confirm the entry."""
    bot = await make_bot()  # ivr.inband_dtmf = "auto", the default
    pcap = write_keyed_audio_pcap(tmp_path / "tones.pcap", codec)
    await keyed_call(sipp, bot, pcap, "uac_inband", codec)
    (row,) = await wait_journal_rows(bot, finished)
    assert_confirmed_3_1500(row, codec=codec.name)
    assert row["digits"] == KEYS and row["attempts"] == 1
    metric = await keys_metric(bot)
    assert metric["inband"] == len(KEYS) and metric["rfc4733"] == 0, metric


async def test_a_key_sent_before_the_ack_arrives_is_heard(
    make_bot: MakeBot, sipp: Sipp, tmp_path: Path
) -> None:
    """The phone sends audio once it has our 200 OK, and its first tone is over
    before its ACK reaches the bot (sent 400 ms late; a loaded bot reads its ACK
    late too): that audio is the call's, and the key in it counts."""
    bot = await make_bot()
    pcap = write_keyed_audio_pcap(tmp_path / "early.pcap", PCMU, lead_in_ms=60)
    await keyed_call(sipp, bot, pcap, "uac_inband_late_ack", PCMU)
    (row,) = await wait_journal_rows(bot, finished)
    assert_confirmed_3_1500(row)
    assert row["digits"] == KEYS and row["attempts"] == 1


async def test_tones_are_not_listened_for_when_off(
    make_bot: MakeBot, sipp: Sipp, tmp_path: Path
) -> None:
    bot = await make_bot(ivr={"inband_dtmf": "off"})
    pcap = write_keyed_audio_pcap(tmp_path / "tones.pcap", PCMU)
    call = asyncio.create_task(keyed_call(sipp, bot, pcap, "uac_inband", PCMU))
    (row,) = await wait_journal_rows(bot, finished, timeout=SIPP_TIMEOUT_S)
    await call
    assert row["status"] == "incomplete" and row["digits"] == "", row
    assert bot.counters.keys_inband == 0


@pytest.mark.parametrize("mode", ["auto", "on"])
async def test_dual_mode_phone_gives_each_key_once(
    make_bot: MakeBot, sipp: Sipp, tmp_path: Path, mode: str
) -> None:
    """Keys as RFC 4733 while the audio carries the same tones: exactly KEYS.

    `auto` stops listening to tones at the first RFC 4733 key; `on` listens to
    both all call long, and each press's two copies are paired into one digit.
    """
    bot = await make_bot(ivr={"inband_dtmf": mode})
    pcap = write_keyed_audio_pcap(tmp_path / "dual.pcap", PCMU, dual_mode=True)
    await keyed_call(sipp, bot, pcap, "uac_dtmf", PCMU)
    (row,) = await wait_journal_rows(bot, finished)
    assert_confirmed_3_1500(row)
    assert row["digits"] == KEYS and row["attempts"] == 1
    counted = bot.counters.keys_rfc4733 + bot.counters.keys_inband
    assert counted == len(KEYS), bot.counters
