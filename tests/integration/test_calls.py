"""Whole calls against the real app: SIPp plays the manager's phone, the bot's
journal (the SQLite file) and its BYE are the outcomes checked.

Timing notes: keys barge in, so a keyed call lasts lead-in + presses + the
"saved" prompt (~6 s); the prompts are the stock English ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import weakref
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.conftest import MakeBot, finished, needs_raw, needs_sipp, target, wait_rows
from tests.integration.keyed_call import (
    CALLER,
    KEYS,
    SIPP_TIMEOUT_S,
    assert_confirmed_3_1500,
    dtmf_call,
)
from tests.polling import until
from tests.sipp_harness.pcap import parse_rtp, write_dtmf_pcap
from tests.sipp_harness.rtp_probe import RtpProbe
from tests.sipp_harness.runner import Sipp, SippResult, build_info_scenario
from voicebot.app import VoicebotApp
from voicebot.media.g711 import PCMA, PCMU
from voicebot.media.prompt_library import PROMPT_NAMES, PromptLibrary

pytestmark = [pytest.mark.sipp, needs_sipp]


class PayloadProbe(RtpProbe):
    """An RtpProbe that also keeps every datagram (RtpRecord keeps sizes only)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self.raw.append(data)
        super()._on_datagram(data, addr)


@needs_raw
async def test_rfc4733_happy_path_pcmu(bot: VoicebotApp, sipp: Sipp, tmp_path: Path) -> None:
    pcap = write_dtmf_pcap(tmp_path / "keys.pcap", KEYS, lead_in_ms=1500, gap_ms=250)
    result = await dtmf_call(sipp, bot, pcap)
    # uac_dtmf can only succeed by receiving (and answering) the bot's BYE
    assert result.ok and result.successful_calls == 1, result.describe()
    assert "BYE sip:" in result.messages_log_text
    rows = await wait_rows(bot, finished)
    assert len(rows) == 1
    row = rows[0]
    assert_confirmed_3_1500(row)
    assert row["digits"] == KEYS
    assert row["attempts"] == 1
    assert row["pbx_call_id"] == CALLER["pbx_call_id"]
    assert row["client_number"] == CALLER["client_number"]
    assert row["manager"] == CALLER["manager"]
    # the same through the app's own API, with the value as a Decimal
    assert bot.journal is not None
    (journal_row,) = await bot.journal.recent()
    assert journal_row.value == Decimal("1500") and journal_row.status == "confirmed"
    assert journal_row.sip_call_id == row["sip_call_id"]


@needs_raw
async def test_a_finished_call_is_freed_without_the_cycle_collector(
    bot: VoicebotApp, sipp: Sipp, tmp_path: Path
) -> None:
    """Nothing a call hands its handlers to (the SIP call and dialog, the RTP
    session) points back at it once it is over, so its objects go by reference
    counting as it ends. Before, a whole call (73 objects) waited in a reference cycle for a
    full collection pass, which under churn took 30-108 ms (bench/README.md)."""
    pcap = write_dtmf_pcap(tmp_path / "keys.pcap", KEYS, lead_in_ms=1500, gap_ms=250)
    seen: list[weakref.ref[object]] = []

    async def note_the_call() -> None:
        while not seen:
            for call in bot._calls.values():  # the call, and its SIP side
                seen.extend([weakref.ref(call), weakref.ref(call._call)])
            await asyncio.sleep(0.01)

    gc.collect()
    gc.disable()  # the cycle collector may not free it for us
    try:
        watcher = asyncio.create_task(note_the_call())
        result = await dtmf_call(sipp, bot, pcap)
        assert result.ok and result.successful_calls == 1, result.describe()
        await until(lambda: not bot._calls, timeout=5, what="the call's task to end")
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert len(seen) == 2
        await until(
            lambda: all(ref() is None for ref in seen),
            timeout=2,
            what=lambda: f"the call freed by refcount; still alive: {[r() for r in seen]}",
        )
    finally:
        gc.enable()


@needs_raw
async def test_pcma_call_and_bot_audio_is_a_law(
    bot: VoicebotApp, sipp: Sipp, tmp_path: Path
) -> None:
    """Two PCMA calls at once: SIPp keys from a pcap; an RtpProbe keys in real
    time and checks the bot's payloads are the A-law greeting, byte for byte."""
    pcap = write_dtmf_pcap(
        tmp_path / "keys.pcap", KEYS, lead_in_ms=1500, gap_ms=250, audio_payload_type=8
    )
    prompts = PromptLibrary.load("en", PROMPT_NAMES)
    greeting_alaw = prompts.frames("greeting", "PCMA", PCMA.encode)
    greeting_ulaw = prompts.frames("greeting", "PCMU", PCMU.encode)
    n_check = 50  # one second of the greeting

    async with PayloadProbe() as probe:

        async def probe_call() -> SippResult:
            return await sipp.arun_scenario(
                "uac_signalling_only",
                target(bot),
                keys={
                    **CALLER,
                    "pbx_call_id": "probe-pcma",
                    "codec_pt": 8,
                    "codec_name": "PCMA",
                    "rtp_port": probe.port,
                    "hangup_after_ms": 600000,  # only the bot's BYE ends it
                },
                timeout_s=SIPP_TIMEOUT_S,
                trace_msg=True,
            )

        async def probe_media() -> None:
            await probe.wait_packets(n_check + 5, timeout=10)
            await probe.send_silence(payload_type=8)
            await probe.send_dtmf(KEYS, press_ms=100, gap_ms=250)

        sipp_call, probe_sipp, _ = await asyncio.gather(
            dtmf_call(sipp, bot, pcap, codec_pt=8, codec_name="PCMA"),
            probe_call(),
            probe_media(),
        )
        await probe.stop_silence()

    assert sipp_call.ok and sipp_call.successful_calls == 1, sipp_call.describe()
    assert probe_sipp.ok and probe_sipp.successful_calls == 1, probe_sipp.describe()
    assert "m=audio" in probe_sipp.messages_log_text and " RTP/AVP 8" in (
        probe_sipp.messages_log_text
    )

    audio = [p for p in (parse_rtp(d) for d in probe.raw) if p is not None and p.event is None]
    assert audio and {p.pt for p in audio} == {8}, {p.pt for p in audio}
    assert {len(p.payload) for p in audio} == {160}
    # The bot's first speech frame and the second that follows are the greeting
    # as PCMA.encode makes it (not the mu-law encoding of the same prompt).
    silence = PCMA.silence()
    payloads = [p.payload for p in audio]
    first_speech = next(i for i, p in enumerate(payloads) if p != silence)
    assert payloads[first_speech] == greeting_alaw[first_speech]
    assert payloads[:n_check] == list(greeting_alaw[:n_check])
    assert payloads[:n_check] != list(greeting_ulaw[:n_check])

    rows = await wait_rows(bot, lambda rs: finished(rs, 2))
    assert len(rows) == 2
    for row in rows:
        assert_confirmed_3_1500(row, codec="PCMA")
        assert row["digits"] == KEYS
    assert {r["pbx_call_id"] for r in rows} == {CALLER["pbx_call_id"], "probe-pcma"}


async def test_sip_info_digits(bot: VoicebotApp, sipp: Sipp, tmp_path: Path) -> None:
    scenario = tmp_path / "uac_info_keys.xml"
    build_info_scenario(KEYS, pause_ms=300, lead_in_ms=1500, path=scenario)
    result = await sipp.arun_scenario(
        scenario, target(bot), keys=CALLER, timeout_s=SIPP_TIMEOUT_S, trace_msg=True
    )
    assert result.ok and result.successful_calls == 1, result.describe()
    (row,) = await wait_rows(bot, finished)
    assert_confirmed_3_1500(row)
    assert row["digits"] == KEYS and row["attempts"] == 1


@needs_raw
async def test_lost_duplicated_and_unknown_events_do_not_change_digits(
    bot: VoicebotApp, sipp: Sipp, tmp_path: Path
) -> None:
    """Three calls at once on one bot, each with a damaged RFC 4733 stream."""
    variants: dict[str, dict[str, object]] = {
        # the marker packet of "3" and of the second "0" lost
        "lost-marker": {"drop_marker_of": {0, 5}},
        # every datagram twice, and the marker of "1" a third time
        "duplicated": {"duplicate_all": True, "duplicate_marker_of": {2}},
        # an event 16 (not a key) pressed before "1" and before the final "1"
        "event-16": {"insert_events": [(2, 16), (7, 16)]},
    }
    calls = []
    for name, damage in variants.items():
        pcap = write_dtmf_pcap(
            tmp_path / f"{name}.pcap",
            KEYS,
            lead_in_ms=1500,
            gap_ms=250,
            **damage,  # type: ignore[arg-type]
        )
        calls.append(dtmf_call(sipp, bot, pcap, pbx_call_id=name))
    results = await asyncio.gather(*calls)
    for result in results:
        assert result.ok and result.successful_calls == 1, result.describe()
    rows = await wait_rows(bot, lambda rs: finished(rs, len(variants)))
    by_name = {r["pbx_call_id"]: r for r in rows}
    assert set(by_name) == set(variants)
    for name, row in by_name.items():
        assert row["digits"] == KEYS, (name, row)
        assert_confirmed_3_1500(row)
        assert row["attempts"] == 1, (name, row)


@needs_raw
async def test_wrong_code_then_right_one(bot: VoicebotApp, sipp: Sipp, tmp_path: Path) -> None:
    keys = "7#" + KEYS
    pcap = write_dtmf_pcap(tmp_path / "keys.pcap", keys, lead_in_ms=1500, gap_ms=250)
    result = await dtmf_call(sipp, bot, pcap)
    assert result.ok and result.successful_calls == 1, result.describe()
    (row,) = await wait_rows(bot, finished)
    assert_confirmed_3_1500(row)
    assert row["digits"] == keys
    assert row["attempts"] == 2


async def test_silence_gives_up_and_hangs_up(make_bot: MakeBot, sipp: Sipp) -> None:
    app = await make_bot(ivr={"max_attempts": 2})
    result = await sipp.arun_scenario(
        "uac_silence", target(app), keys=CALLER, timeout_s=SIPP_TIMEOUT_S, trace_msg=True
    )
    # uac_silence succeeds only on the bot's BYE
    assert result.ok and result.successful_calls == 1, result.describe()
    (row,) = await wait_rows(app, finished)
    assert row["status"] == "incomplete", row
    assert row["category_code"] is None and row["value"] is None, row
    assert row["digits"] == "" and row["attempts"] == 2, row
    assert row["end_reason"] == "menu_finished", row


@needs_raw
async def test_hangup_mid_menu_keeps_what_was_keyed(
    bot: VoicebotApp, sipp: Sipp, tmp_path: Path
) -> None:
    pcap = write_dtmf_pcap(tmp_path / "keys.pcap", "3#15", lead_in_ms=500, gap_ms=250)
    result = await dtmf_call(sipp, bot, pcap, scenario="uac_hangup", hangup_after_ms=3000)
    # uac_hangup fails on a BYE from the bot: the caller's BYE ended this call
    assert result.ok and result.successful_calls == 1, result.describe()
    (row,) = await wait_rows(bot, finished)
    assert row["status"] == "incomplete", row
    assert row["category_code"] == "3" and row["category_name"] == "existing order", row
    assert row["value"] is None, row
    assert str(row["digits"]).startswith("3#15"), row
    assert row["end_reason"] == "remote_bye", row


@pytest.mark.alone
async def test_rtp_pacing_of_the_bot(bot: VoicebotApp, sipp: Sipp) -> None:
    """Count-based pacing check: ~3 s of the greeting at 50 packets/s."""
    async with RtpProbe() as probe:

        async def media() -> None:
            await probe.wait_packets(1, timeout=10)
            await probe.send_silence()  # symmetric RTP: from the SDP address

        result, _ = await asyncio.gather(
            sipp.arun_scenario(
                "uac_signalling_only",
                target(bot),
                keys={**CALLER, "rtp_port": probe.port, "hangup_after_ms": 3000},
                timeout_s=SIPP_TIMEOUT_S,
                trace_msg=True,
            ),
            media(),
        )
        await probe.stop_silence()
        await probe.wait_quiet(0.2, timeout=3)

    assert result.ok and result.successful_calls == 1, result.describe()
    stats = probe.stats(pt=0, skip_ms=200)
    print(f"bot RTP: {stats.packets_per_s:.3f} packets/s over {stats.steady_packets} packets")
    # Arrival times are taken in this process, which shares its loop with the
    # bot: one late wake-up at either end of a ~2.8 s window moves the rate by
    # ~2 %. A pacing bug (a dropped or doubled tick) is off by 25 % or more.
    assert 48.0 <= stats.packets_per_s <= 52.0, stats
    assert stats.steady_packets >= 120, stats
    assert stats.sizes == {160}, stats
    assert stats.seq_gaps == 0 and stats.seq_duplicates == 0, stats
    assert len(stats.ssrcs) == 1 and stats.payload_types == {0}, stats
    recs = [r for r in probe.records if r.pt == 0]
    for a, b in itertools.pairwise(recs):
        assert (b.seq - a.seq) & 0xFFFF == 1, (a, b)
        assert (b.ts - a.ts) & 0xFFFFFFFF == 160, (a, b)
    (row,) = await wait_rows(bot, finished)
    assert row["end_reason"] == "remote_bye" and row["status"] == "incomplete"
