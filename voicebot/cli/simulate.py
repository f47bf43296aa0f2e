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
from typing import Any

from ivr import KEYPAD
from voicebot.config_errors import load_settings_or_exit
from voicebot.settings import Settings


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
    parser.add_argument(
        "--rtp-ports",
        type=_port_range,
        default=(41000, 41999),
        metavar="LO-HI",
        help="local UDP ports for the phone's RTP (default: 41000-41999)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log SIP and RTP events")
    parser.set_defaults(handler=simulate)


def _port_range(text: str) -> tuple[int, int]:
    lo_text, sep, hi_text = text.partition("-")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        lo = hi = 0
    if not sep or not (1024 <= lo < hi <= 65535):
        raise argparse.ArgumentTypeError(
            f"expected LO-HI with 1024 <= LO < HI <= 65535, e.g. 41000-41999 (got {text!r})"
        )
    return lo, hi


def _target(args: argparse.Namespace, settings: Settings) -> str:
    if args.target:
        return str(args.target)
    host = settings.sip.bind_host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{settings.sip.bind_port}"


def simulate(args: argparse.Namespace) -> int:
    bad = set(args.digits) - KEYPAD - {","}
    if bad:
        print(
            f"simulate-call: --digits may hold 0-9 * # A-D and ',' (got {''.join(bad)!r})",
            file=sys.stderr,
        )
        return 2
    settings = load_settings_or_exit("voicebot simulate-call")
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
    from voicebot.softphone import KeyingStyle, place_call

    headers = {"X-Client-Number": args.client_number, "X-Manager": args.manager}
    if args.pbx_call_id:
        headers["X-Call-ID"] = args.pbx_call_id
    report = await place_call(
        _target(args, settings),
        args.digits,
        codec=args.codec,
        manager=args.manager,
        headers=headers,
        info=args.info,
        style=KeyingStyle(listen_s=args.wait, timeout_s=args.timeout),
        rtp_ports=args.rtp_ports,
    )
    outcome = report.as_dict()
    if report.sip_call_id:
        outcome["journal"] = await asyncio.to_thread(_journal_row, settings, report.sip_call_id)
    return outcome


def _journal_row(settings: Settings, sip_call_id: str) -> Any:
    """The bot's categorization of this call, through its HTTP API (the menu's table is
    /api/v1/categorizations; /api/v1/calls is the PBX call log)."""
    host = settings.http.host if settings.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
    request = urllib.request.Request(
        f"http://{host}:{settings.http.port}/api/v1/categorizations?limit=50"
    )
    if settings.http.api_token:
        request.add_header("Authorization", f"Bearer {settings.http.api_token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            calls = json.load(response)["categorizations"]
    except (OSError, ValueError, KeyError) as error:
        return f"not available from the HTTP API ({error})"
    for row in calls:
        if row.get("sip_call_id") == sip_call_id:
            return row
    return "no journal row for this call"
