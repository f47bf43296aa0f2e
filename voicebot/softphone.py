"""A manager's desk phone in software: dials the bot over real SIP/RTP, keys
digits like a person (RFC 4733 or SIP INFO), and writes down what it heard.

What it heard is literal: the bot sends its stock prompts frame by frame, so
every 20 ms frame that arrives is looked up among the prompts' own encoded
frames and the call becomes a transcript ("greeting, ask_category, …,
you_entered_value, digit_1, digit_5, …, saved"). Used by `voicebot
simulate-call` for demos and by the end-to-end tests as an oracle for what the
bot said.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from voicebot.media.clock import MediaClock
from voicebot.media.g711 import CODECS
from voicebot.media.prompt_library import PROMPT_NAMES, PromptError, PromptLibrary
from voicebot.media.session import RtpPortPool, RtpSession
from voicebot.settings import SipSettings
from voicebot.sip.call import CallFailed, IncomingCall
from voicebot.sip.media_session import call_rtp_session
from voicebot.sip.user_agent import UserAgent

LANGUAGES = ("en", "ru", "uk")
SPEECH_PEAK = 500  # a frame louder than this (16-bit PCM) counts as speech


class PromptTranscript:
    """Recognises the bot's stock prompts frame by frame.

    A decoded frame that belongs to exactly one prompt (and one place in it)
    names it; frames shared by several (silence, padding) name nothing. The
    frames of one playing collapse into one entry, so a prompt cut short by
    barge-in is still listed once, and one said twice in a row twice.
    """

    def __init__(self, codec_name: str, languages: Iterable[str] = LANGUAGES) -> None:
        codec = CODECS[codec_name]
        owners: dict[bytes, set[tuple[str, int]]] = {}
        for language in languages:
            try:
                library = PromptLibrary.load(language, PROMPT_NAMES)
            except PromptError:
                continue
            for name in PROMPT_NAMES:
                for number, frame in enumerate(library.frames(name, codec.name, codec.encode)):
                    owners.setdefault(codec.decode(frame), set()).add((name, number))
        self._index = {pcm: next(iter(seen)) for pcm, seen in owners.items() if len(seen) == 1}
        self._last: tuple[str, int] | None = None
        self.prompts: list[str] = []
        # When each entry of `prompts` began to be heard (time.monotonic()), so a
        # test can order what the bot said against what it stored.
        self.heard_at: list[float] = []
        self.speech_frames = 0
        self.frames_since_speech = 0

    def frame(self, pcm: bytes) -> None:
        samples = memoryview(pcm).cast("h")
        if max((abs(s) for s in samples), default=0) > SPEECH_PEAK:
            self.speech_frames += 1
            self.frames_since_speech = 0
        else:
            self.frames_since_speech += 1
        seen = self._index.get(pcm)
        if seen is None:
            return
        name, number = seen
        # Frames of one playing run forward; the same prompt again (two zeros
        # in "1500") starts over at a lower frame number.
        if self._last is None or self._last[0] != name or number <= self._last[1]:
            self.prompts.append(name)
            self.heard_at.append(time.monotonic())
        self._last = seen

    @property
    def speech_s(self) -> float:
        return round(self.speech_frames * 0.020, 2)


@dataclass
class CallReport:
    target: str
    digits: str
    answered: bool = False
    status: int | None = None
    reason: str | None = None
    codec: str | None = None
    sip_call_id: str | None = None
    ended: str | None = None
    heard: list[str] = field(default_factory=list)
    heard_at: list[float] = field(default_factory=list)  # time.monotonic() of each
    heard_speech_s: float = 0.0
    rtp_received: int = 0
    rtp_sent: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class KeyingStyle:
    """How a person keys: listen first, a short gap between keys, a breath
    after `#` while the next question starts; `,` is a one-second pause."""

    listen_s: float = 1.5
    # Before the confirm key (the keys after the last `#`), hear the read-back out.
    hear_readback: bool = True
    press_s: float = 0.12
    between_keys_s: float = 0.25
    after_terminator_s: float = 1.2
    timeout_s: float = 60.0


async def place_call(
    target: str,
    digits: str,
    *,
    codec: str = "PCMU",
    manager: str = "201",
    headers: dict[str, str] | None = None,
    info: bool = False,
    style: KeyingStyle | None = None,
    rtp_ports: tuple[int, int] = (41000, 41999),
) -> CallReport:
    """Dial `target` (host:port or SIP URI), key `digits`, wait for the bot to
    hang up (or hang up after `style.timeout_s`), and report."""
    style = style or KeyingStyle()

    refusals: set[asyncio.Task[None]] = set()

    def refuse(call: IncomingCall) -> None:
        # A phone that is dialling out is busy for anyone calling it.
        task = asyncio.get_running_loop().create_task(call.reject(486, "Busy Here"))
        refusals.add(task)
        task.add_done_callback(refusals.discard)

    phone = UserAgent(
        SipSettings(
            mode="peer",
            bind_host="127.0.0.1",
            bind_port=0,
            allowed_peers=["127.0.0.1/32"],
            user_agent="voicebot-softphone",
        ),
        refuse,
    )
    await phone.start()
    clock = MediaClock()
    pool = RtpPortPool("127.0.0.1", *rtp_ports)
    endpoint = await pool.allocate()
    report = CallReport(target=target, digits=digits)
    session: RtpSession | None = None
    transcript: PromptTranscript | None = None
    try:
        call = phone.invite(
            target,
            from_user=manager,
            headers=headers or {},
            local_rtp=(endpoint.host, endpoint.port),
            codecs=[codec],
        )
        try:
            media = await call.wait_answered(timeout=10)
        except CallFailed as failed:
            report.status, report.reason = failed.status, failed.reason
            endpoint.close()
            return report
        report.answered, report.codec, report.sip_call_id = True, media.codec_name, call.call_id
        transcript = PromptTranscript(media.codec_name)
        session = call_rtp_session(endpoint, media, clock, on_audio=transcript.frame)
        await session.start()
        await _key(digits, call, session, transcript, info, style)
        try:
            reason = await asyncio.wait_for(asyncio.shield(call.ended), style.timeout_s)
        except TimeoutError:
            await call.hangup()
            reason = "timeout: we hung up"
        report.ended = {"remote_bye": "bot hung up"}.get(reason, reason)
    finally:
        if session is not None:
            report.rtp_received = session.stats.packets_received
            report.rtp_sent = session.stats.packets_sent
            await session.close()
        if transcript is not None:
            report.heard = transcript.prompts
            report.heard_at = transcript.heard_at
            report.heard_speech_s = transcript.speech_s
        await clock.stop()
        await phone.stop()
    return report


async def _key(
    digits: str,
    call: Any,
    session: RtpSession,
    transcript: PromptTranscript,
    info: bool,
    style: KeyingStyle,
) -> None:
    await asyncio.sleep(style.listen_s)
    confirm_from = digits.rfind("#") + 1 if "#" in digits[:-1] else len(digits)
    for index, key in enumerate(digits):
        if call.ended.done():
            return
        if index == confirm_from and style.hear_readback:
            await _until_quiet(transcript, quiet_s=0.8, cap_s=30.0)
        if key == ",":
            await asyncio.sleep(1.0)
            continue
        if info:
            await call.send_info_key(key)
        else:
            await session.send_keys(key, duration=style.press_s, gap=0.0)
        await asyncio.sleep(style.after_terminator_s if key == "#" else style.between_keys_s)


async def _until_quiet(transcript: PromptTranscript, quiet_s: float, cap_s: float) -> None:
    """Wait until the bot has been silent for `quiet_s` (it finished speaking)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cap_s
    while loop.time() < deadline:
        if transcript.speech_frames and transcript.frames_since_speech * 0.020 >= quiet_s:
            return
        await asyncio.sleep(0.05)
