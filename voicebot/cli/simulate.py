"""`voicebot simulate-call`: a real SIP/RTP softphone that dials the bot like a
manager's desk phone would, keys digits as RFC 4733 events (or SIP INFO),
listens to what the bot says, and prints the outcome — for demos and smoke
tests against a running `voicebot run`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from voicebot.settings import Settings, SipSettings, load_settings

KEYS = set("0123456789*#ABCD")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate-call",
        help="dial the bot over real SIP/RTP and key digits like a manager",
        description=__doc__,
    )
    parser.add_argument(
        "--digits",
        default="1#1500#1",
        help="keys to press; ',' pauses 1 s (default: %(default)s)",
    )
    parser.add_argument("--target", help="bot address host:port (default: sip.bind_host:port)")
    parser.add_argument("--codec", choices=["PCMU", "PCMA"], default="PCMU")
    parser.add_argument("--manager", default="201", help="From user (the manager's extension)")
    parser.add_argument("--client-number", default="+380441234567", help="sent as X-Client-Number")
    parser.add_argument("--pbx-call-id", default=None, help="sent as X-Call-ID")
    parser.add_argument("--info", action="store_true", help="send keys as SIP INFO, not RFC 4733")
    parser.add_argument("--wait", type=float, default=1.5, help="seconds to listen before keying")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log SIP and RTP events")
    parser.set_defaults(handler=simulate)


@dataclass
class Heard:
    """What came back over RTP: packets, and how much of it was speech."""

    packets: int = 0
    speech_frames: int = 0
    talkspurts: int = 0
    _speaking: bool = field(default=False, repr=False)
    _quiet_frames: int = field(default=0, repr=False)

    def frame(self, pcm: bytes) -> None:
        self.packets += 1
        samples = memoryview(pcm).cast("h")
        if max((abs(s) for s in samples), default=0) > 500:
            self.speech_frames += 1
            if not self._speaking:
                self.talkspurts += 1
            self._speaking = True
            self._quiet_frames = 0
        else:
            # 200 ms of quiet ends a talkspurt (pauses inside a phrase are shorter).
            self._quiet_frames += 1
            if self._quiet_frames >= 10:
                self._speaking = False

    @property
    def speech_s(self) -> float:
        return self.speech_frames * 0.020


def _target(args: argparse.Namespace, settings: Settings) -> str:
    if args.target:
        return str(args.target)
    host = settings.sip.bind_host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{settings.sip.bind_port}"


def simulate(args: argparse.Namespace) -> int:
    bad = set(args.digits) - KEYS - {","}
    if bad:
        print(
            f"simulate-call: --digits may hold 0-9 * # A-D and ',' (got {''.join(bad)!r})",
            file=sys.stderr,
        )
        return 2
    settings = load_settings()
    from voicebot.logs import configure_logging

    configure_logging("debug" if args.verbose else "warning", settings.log.format)
    try:
        outcome = asyncio.run(_simulate(args, settings))
    except (OSError, TimeoutError) as error:
        print(f"simulate-call: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(outcome, indent=2, ensure_ascii=False))
    else:
        for key, value in outcome.items():
            print(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    return 0 if outcome.get("answered") else 1


async def _simulate(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from voicebot.media.clock import MediaClock
    from voicebot.media.g711 import CODECS
    from voicebot.media.session import RtpPortPool, RtpSession
    from voicebot.sip.call import CallFailed
    from voicebot.sip.user_agent import UserAgent

    async def refuse(call: Any) -> None:
        await call.reject(486, "Busy Here")

    phone = UserAgent(
        SipSettings(
            mode="peer",
            bind_host="127.0.0.1",
            bind_port=0,
            allowed_peers=["127.0.0.1"],
            user_agent="voicebot-simulate-call",
        ),
        refuse,
    )
    await phone.start()
    clock = MediaClock()
    pool = RtpPortPool("127.0.0.1", 41000, 41999)
    endpoint = await pool.allocate()
    codec = CODECS[args.codec]
    headers = {"X-Client-Number": args.client_number, "X-Manager": args.manager}
    if args.pbx_call_id:
        headers["X-Call-ID"] = args.pbx_call_id
    outcome: dict[str, Any] = {"target": _target(args, settings), "digits": args.digits}
    heard = Heard()
    session: RtpSession | None = None
    try:
        call = phone.invite(
            _target(args, settings),
            from_user=args.manager,
            headers=headers,
            local_rtp=(endpoint.host, endpoint.port),
            codecs=[codec.name],
        )
        try:
            media = await call.wait_answered(timeout=10)
        except CallFailed as failed:
            outcome.update(answered=False, status=failed.status, reason=failed.reason)
            endpoint.close()
            return outcome
        outcome.update(answered=True, codec=media.codec_name, sip_call_id=call.call_id)
        session = RtpSession(
            endpoint,
            (media.remote_host, media.remote_port),
            CODECS[media.codec_name],
            clock,
            dtmf_payload_type=media.telephone_event_pt,
            on_audio=heard.frame,
        )
        await session.start()
        await _key(args, call, session)
        try:
            reason = await asyncio.wait_for(asyncio.shield(call.ended), args.timeout)
        except TimeoutError:
            await call.hangup()
            reason = "timeout: we hung up"
        outcome["ended"] = {"remote_bye": "bot hung up"}.get(reason, reason)
    finally:
        if session is not None:
            outcome.update(
                heard_speech_s=round(heard.speech_s, 2),
                heard_talkspurts=heard.talkspurts,
                rtp_received=session.stats.packets_received,
                rtp_sent=session.stats.packets_sent,
            )
            await session.close()
        await clock.stop()
        await phone.stop()
    if outcome.get("sip_call_id"):
        outcome["journal"] = await asyncio.to_thread(_journal_row, settings, outcome["sip_call_id"])
    return outcome


async def _key(args: argparse.Namespace, call: Any, session: Any) -> None:
    """Key like a person: listen first, ~250 ms between keys, a breath after #."""
    await asyncio.sleep(args.wait)
    for key in args.digits:
        if call.ended.done():
            return
        if key == ",":
            await asyncio.sleep(1.0)
            continue
        if args.info:
            await call.send_info_key(key)
        else:
            await session.send_keys(key, duration=0.12, gap=0.0)
        await asyncio.sleep(1.2 if key == "#" else 0.25)


def _journal_row(settings: Settings, sip_call_id: str) -> Any:
    """The bot's journal row for this call, through its HTTP API."""
    host = settings.http.host if settings.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
    request = urllib.request.Request(f"http://{host}:{settings.http.port}/api/v1/calls?limit=50")
    if settings.http.api_token:
        request.add_header("Authorization", f"Bearer {settings.http.api_token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            calls = json.load(response)["calls"]
    except (OSError, ValueError, KeyError) as error:
        return f"not available from the HTTP API ({error})"
    for row in calls:
        if row.get("sip_call_id") == sip_call_id:
            return row
    return "no journal row for this call"
