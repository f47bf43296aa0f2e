"""The SIP dialler of callbacks against SIPp playing the PBX's phones, over loopback.

Each test starts the bot's real `UserAgent`, `MediaClock` and RTP ports,
builds a `SipDialler` with the shipped prompts, starts one SIPp UAS per
phone (tests/callbacks/scenarios) and runs one `attempt()`. The manager's
key is RFC 4733 from a pcap written for the test (tests/sipp_harness/pcap.py),
so the key reaches the dialler the way a desk phone's does.
"""

from __future__ import annotations

import asyncio
import math
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.ports import rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp, SippRun, can_play_pcap
from voicebot.callbacks.attempt import AttemptRequest, Outcome
from voicebot.callbacks.dialler import SipDialler
from voicebot.callbacks.prompts import DIALLER_PROMPT_NAMES
from voicebot.media.clock import MediaClock
from voicebot.media.prompt_library import PromptLibrary
from voicebot.media.session import RtpPortPool
from voicebot.settings import SipSettings
from voicebot.sip.user_agent import UserAgent

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]


@dataclass
class Rig:
    ua: UserAgent
    clock: MediaClock
    ports: RtpPortPool
    prompts: PromptLibrary
    tmp: Path
    sipp: Sipp

    async def pbx(self, scenario: str, **keys: object) -> SippRun:
        """One SIPp UAS (a phone behind the PBX), listening on its own port."""
        merged: dict[str, object] = {"pcap": self.pcap(""), "frag": "200 OK"}
        merged.update(keys)
        run = await self.sipp.start(SCENARIOS / scenario, None, keys=merged, timeout_s=40)
        await run.listening()
        return run

    def pcap(self, keys: str) -> Path:
        return write_dtmf_pcap(self.tmp / f"keys-{keys or 'none'}.pcap", keys, lead_in_ms=300)

    def dialler(self, pbx_port: int, **kw: Any) -> SipDialler:
        sip = self.ua.settings.model_copy(update={"server": "127.0.0.1", "port": pbx_port})
        return SipDialler(
            self.ua,
            self.clock,
            self.ports,
            self.prompts,
            sip,
            now=lambda: NOW,
            **{"ring_timeout_s": 5.0, "key_timeout_s": 3.0, **kw},
        )


@pytest.fixture
async def rig(tmp_path: Path, sipp: Sipp) -> AsyncIterator[Rig]:
    low, high = rtp_window(calls=8)
    settings = SipSettings(
        bind_port=0, username="bot", password="secret", rtp_port_min=low, rtp_port_max=high
    )
    ua = UserAgent(settings, lambda call: None)
    await ua.start()
    clock = MediaClock()
    prompts = PromptLibrary.load("en", DIALLER_PROMPT_NAMES)
    yield Rig(ua, clock, RtpPortPool("127.0.0.1", low, high), prompts, tmp_path, sipp)
    await ua.stop()
    await clock.stop()


def request(**kw: Any) -> AttemptRequest:
    base: dict[str, Any] = {
        "job_id": 7,
        "attempt": 2,
        "client_number": "+380441234567",
        "client_dial": "0441234567",
        "missed_at": NOW - timedelta(minutes=12),
        "targets": ("201",),
    }
    base.update(kw)
    return AttemptRequest(**base)


async def finished(run: SippRun) -> str:
    """SIPp's verdict, and its log (what the scenario's <log> actions wrote)."""
    result = await run.wait()
    assert result.ok, result.describe()
    return result.logs_text


async def test_manager_presses_1_refer_and_sipfrag_200_complete_it(rig: Rig) -> None:
    run = await rig.pbx("pbx_answer_refer.xml", pcap=rig.pcap("1"))
    result = await rig.dialler(run.local_port).attempt(request())
    log = await finished(run)
    assert f"REFER to sip:0441234567@127.0.0.1:{run.local_port}" in log
    assert result.outcome is Outcome.COMPLETED, result
    assert (result.target, result.sip_status, result.rang) == ("201", 200, (("201", 200),))


async def test_client_busy_in_the_sipfrag(rig: Rig) -> None:
    run = await rig.pbx("pbx_answer_refer.xml", pcap=rig.pcap("1"), frag="486 Busy Here")
    result = await rig.dialler(run.local_port).attempt(request())
    await finished(run)
    assert (result.outcome, result.sip_status) == (Outcome.CLIENT_BUSY, 486), result


@pytest.mark.parametrize(
    ("key", "outcome"), [("2", Outcome.MANAGER_LATER), ("3", Outcome.NOT_NEEDED)]
)
async def test_manager_presses_2_or_3(rig: Rig, key: str, outcome: Outcome) -> None:
    run = await rig.pbx("pbx_answer_key_bye.xml", pcap=rig.pcap(key))
    result = await rig.dialler(run.local_port).attempt(request())
    await finished(run)  # the bot said its goodbye and hung up
    assert (result.outcome, result.target) == (outcome, "201"), result


async def test_ring_timeout_cancels_and_is_no_manager(rig: Rig) -> None:
    run = await rig.pbx("pbx_ring_cancel.xml")
    result = await rig.dialler(run.local_port, ring_timeout_s=1.0).attempt(request())
    await finished(run)  # SIPp got the CANCEL, answered 487, got the ACK
    assert result.outcome is Outcome.NO_MANAGER, result
    assert result.rang == (("201", None),)


async def test_407_challenge_is_answered_with_credentials(rig: Rig) -> None:
    run = await rig.pbx("pbx_challenge_busy.xml")
    result = await rig.dialler(run.local_port).attempt(request())
    log = await finished(run)  # SIPp checked Proxy-Authorization on the second INVITE
    assert 'username="bot"' in log and 'realm="sipp"' in log and 'nonce="4b2a8c1d5e"' in log
    assert result.outcome is Outcome.NO_MANAGER and result.rang == (("201", 486),), result


async def test_ring_all_first_answer_wins_the_other_is_cancelled(rig: Rig) -> None:
    # Both phones sit behind one "PBX" address in real life; here each is its
    # own SIPp, so the targets are full URIs.
    ringing = await rig.pbx("pbx_ring_cancel.xml")
    answering = await rig.pbx("pbx_answer_key_bye.xml", pcap=rig.pcap("2"))
    targets = (
        f"sip:201@127.0.0.1:{ringing.local_port}",
        f"sip:202@127.0.0.1:{answering.local_port}",
    )
    result = await rig.dialler(answering.local_port).attempt(
        request(targets=targets, ring_strategy="all")
    )
    await finished(answering)
    await finished(ringing)  # CANCELled when 202 answered, not after the ring timeout
    assert (result.outcome, result.target) == (Outcome.MANAGER_LATER, targets[1]), result
    assert dict(result.rang) == {targets[0]: None, targets[1]: 200}


async def test_client_first_then_refer_to_the_manager(rig: Rig) -> None:
    run = await rig.pbx("pbx_answer_refer.xml")
    result = await rig.dialler(run.local_port).attempt(request(order="client_first"))
    log = await finished(run)
    assert f"REFER to sip:201@127.0.0.1:{run.local_port}" in log
    assert (result.outcome, result.target, result.sip_status) == (Outcome.COMPLETED, "201", 200)


def short_prompts(tmp: Path) -> PromptLibrary:
    """The dialler's prompts as 60 ms tones (`ivr.prompts_dir` overrides, as a
    company's recordings would): the whisper takes a second, not fifteen."""
    folder = tmp / "short-prompts"
    folder.mkdir()
    tone = b"".join(
        int(8000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
        for i in range(480)
    )
    for name in DIALLER_PROMPT_NAMES:
        with wave.open(str(folder / f"{name}.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(tone)
    return PromptLibrary.load("en", DIALLER_PROMPT_NAMES, override_dir=folder)


@pytest.mark.alone
async def test_no_key_after_the_question_twice_is_no_key(rig: Rig) -> None:
    rig.prompts = short_prompts(rig.tmp)
    run = await rig.pbx("pbx_answer_key_bye.xml")  # answers, keys nothing
    dialler = rig.dialler(run.local_port, key_timeout_s=0.5)
    started = asyncio.get_running_loop().time()
    result = await dialler.attempt(request())
    waited = asyncio.get_running_loop().time() - started
    await finished(run)
    assert (result.outcome, result.target) == (Outcome.NO_KEY, "201"), result
    assert waited >= 2 * 0.5  # the question was asked, then asked again
