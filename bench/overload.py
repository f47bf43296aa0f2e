"""Overload benchmark (issue 6 item 9): INVITE floods while real calls go on.

    python bench/overload.py [--phase-s 8] [--rates 16,100,300,500] [--legit 3]

One bot process (`python -m voicebot run`, peer mode, RTP range for
`--max-calls` calls, default rate limits) and, per phase, in this process:

* a flood: INVITEs with SDP that are never ACKed, at RATE per second for
  `--phase-s` seconds, from 127.0.0.3 (one allowed source: what a broken or
  hijacked PBX trunk sends) and, in the last phase, from 16 sources at once
  (127.0.1.1-16: what only allowed_peers can stop);
* `--legit` real calls at the same time (voicebot.softphone.place_call: SIP
  from 127.0.0.1, RTP, RFC 4733 keys 3#1500#1, the bot's BYE ends it);
* an OPTIONS ping every 100 ms (its round trip is the loop lag a PBX sees).

The first phase has no flood: the baseline of the same run. Per phase it
prints the flood's final responses by status, legit calls completed (the
journal row confirmed with the keyed digits), bot CPU and peak RSS, OPTIONS
round trip p50/max, media clock skips and SIP refusal counters from /metrics,
and error lines / tracebacks the bot logged (expected refusals are warnings,
so this must stay 0). Then ratios against the baseline. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from api_isolation import ROOT, http_get, options_rtts, percentile, start_bot, wait_http  # noqa: E402

from bench.bot_process import stop_process, tracebacks  # noqa: E402
from tests.ports import free_port, free_udp_span  # noqa: E402
from voicebot.logs import configure_logging  # noqa: E402
from voicebot.softphone import place_call  # noqa: E402

LOOPBACK = "127.0.0.1"
KEYS = "3#1500#1"
SDP = (
    "v=0\r\no=flood 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)


def flood_invite(host: str, port: int, n: int) -> bytes:
    body = SDP.format(host=host)
    return (
        f"INVITE sip:bot@{LOOPBACK} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-flood-{n};rport\r\n"
        f"From: <sip:flood@{host}>;tag=f{n}\r\nTo: <sip:bot@{LOOPBACK}>\r\n"
        f"Call-ID: flood-{n}@{host}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:flood@{host}:{port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


class Flooder:
    """INVITEs at a fixed rate from some sources; never ACKs; counts final answers."""

    def __init__(self, sources: list[str]) -> None:
        self.socks = []
        for host in sources:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((host, 0))
            sock.setblocking(False)
            self.socks.append(sock)
        self.finals: dict[str, int] = {}  # Call-ID -> first final status
        self.sent = 0

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            if not data.startswith(b"SIP/2.0 "):
                continue  # the bot's BYE for a shed call, say
            status = int(data[8:11])
            m = re.search(rb"\r\nCall-ID: ([^\r]+)", data)
            if status >= 200 and m:
                self.finals.setdefault(m.group(1).decode(), status)

    async def run(self, target: tuple[str, int], rate: float, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.socks:
            loop.add_reader(sock.fileno(), self._read, sock)
        start = loop.time()
        try:
            while loop.time() - start < seconds:
                due = int((loop.time() - start) * rate)
                while self.sent < due:
                    sock = self.socks[self.sent % len(self.socks)]
                    host, port = sock.getsockname()
                    sock.sendto(flood_invite(host, port, self.sent), target)
                    self.sent += 1
                await asyncio.sleep(0.005)
            await asyncio.sleep(1.0)  # the last answers
        finally:
            for sock in self.socks:
                loop.remove_reader(sock.fileno())

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


async def metrics(http_port: int) -> dict[str, float]:
    _, body = await http_get(http_port, "/metrics")
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith(("voicebot_sip_refused_total", "voicebot_media_clock_skipped")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def log_problems(log: Path, offset: int) -> tuple[int, int, int]:
    """(error lines, tracebacks, warning lines) the bot logged after `offset`."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    errors = text.count('"level": "error"') + text.count('"level": "critical"')
    return errors, text.count("Traceback") + text.count('"exception"'), text.count('"warning"')


async def legit_call(sip_port: int, rtp: tuple[int, int], pbx_id: str) -> bool:
    report = await place_call(
        f"{LOOPBACK}:{sip_port}",
        KEYS,
        headers={"X-Call-ID": pbx_id, "X-Manager": "201"},
        rtp_ports=rtp,
    )
    return report.answered and report.ended == "bot hung up"


async def confirmed(http_port: int, pbx_ids: list[str]) -> int:
    _, body = await http_get(http_port, "/api/v1/categorizations?limit=500")
    rows = json.loads(body or b"{}").get("categorizations", [])
    return sum(
        1
        for r in rows
        if r.get("pbx_call_id") in pbx_ids
        and r.get("status") == "confirmed"
        and r["digits"] == KEYS
    )


async def phase(
    label: str,
    rate: float,
    sources: list[str],
    args: argparse.Namespace,
    bot: psutil.Process,
    sip_port: int,
    http_port: int,
    log: Path,
) -> dict[str, Any]:
    before = await metrics(http_port)
    offset = log.stat().st_size
    flooder = Flooder(sources) if rate else None
    stop = asyncio.Event()
    pinger = asyncio.create_task(options_rtts(sip_port, stop))
    bot.cpu_percent(None)
    rss = 0
    pbx_ids = [f"{label}-{i}" for i in range(args.legit)]
    tasks: list[asyncio.Task[Any]] = []
    if flooder is not None:
        tasks.append(asyncio.create_task(flooder.run((LOOPBACK, sip_port), rate, args.phase_s)))
    calls = []
    for pbx_id in pbx_ids:
        base = free_udp_span(8)
        calls.append(asyncio.create_task(legit_call(sip_port, (base, base + 7), pbx_id)))
        await asyncio.sleep(args.phase_s / max(1, args.legit) / 2)
        rss = max(rss, bot.memory_info().rss)
    done = asyncio.gather(*tasks, *calls)
    while not done.done():
        rss = max(rss, bot.memory_info().rss)
        await asyncio.sleep(0.25)
    results = done.result()[len(tasks) :]
    cpu = bot.cpu_percent(None)
    stop.set()
    rtts = await pinger
    after = await metrics(http_port)
    completed = await confirmed(http_port, pbx_ids)
    errors, tracebacks, warnings = log_problems(log, offset)
    statuses = Counter(flooder.finals.values()) if flooder else Counter()
    if flooder is not None:
        statuses["none"] = flooder.sent - len(flooder.finals)
        flooder.close()
    result = {
        "phase": label,
        "flood_per_s": rate,
        "sources": len(sources) if rate else 0,
        "flood_sent": flooder.sent if flooder else 0,
        "flood_finals": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "legit_completed": f"{completed}/{args.legit}",
        "legit_bot_hung_up": sum(1 for r in results if r),
        "bot_cpu_percent": round(cpu, 1),
        "bot_rss_peak_mb": round(rss / 2**20, 1),
        "options_p50_ms": round(percentile(rtts, 50), 2),
        "options_max_ms": round(max(rtts), 1) if rtts else None,
        "refusals": {
            k.split('"')[1]: v - before.get(k, 0)
            for k, v in after.items()
            if "reason" in k and v - before.get(k, 0)
        },
        "media_clock_skips": after.get("voicebot_media_clock_skipped_ticks_total", 0)
        - before.get("voicebot_media_clock_skipped_ticks_total", 0),
        "error_lines": errors,
        "tracebacks": tracebacks,
        "warning_lines": warnings,
    }
    print(json.dumps(result), flush=True)
    return result


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="overload-"))
    sip_port, http_port = free_port(), free_port(udp=False)
    rtp_base = free_udp_span(2 * args.max_calls)
    rtp = (rtp_base, rtp_base + 2 * args.max_calls - 1)
    proc = start_bot(workdir, sip_port, http_port, rtp, args.bot_src, flood_defaults=True)
    print(f"# bot: voicebot from {args.bot_src}, max_calls {args.max_calls}, {workdir}", flush=True)
    results = []
    try:
        await wait_http(http_port)
        bot = psutil.Process(proc.pid)
        log = workdir / "bot.log"
        results.append(await phase("baseline", 0, [], args, bot, sip_port, http_port, log))
        for rate in args.rates:
            results.append(
                await phase(
                    f"flood{rate}", rate, ["127.0.0.3"], args, bot, sip_port, http_port, log
                )
            )
        many = [f"127.0.1.{i}" for i in range(1, 17)]
        results.append(await phase("flood300x16", 300, many, args, bot, sip_port, http_port, log))
        base = results[0]
        print(
            "# phase: legit completed, OPTIONS max ms (x baseline), CPU % (x baseline),"
            " RSS MB (x baseline), tracebacks"
        )
        for r in results:
            ratios = (
                r["options_max_ms"] / base["options_max_ms"],
                r["bot_cpu_percent"] / max(base["bot_cpu_percent"], 0.1),
                r["bot_rss_peak_mb"] / base["bot_rss_peak_mb"],
            )
            print(
                f"#   {r['phase']:12} {r['legit_completed']:>5}"
                f"  {r['options_max_ms']:>7} (x{ratios[0]:.1f})"
                f"  {r['bot_cpu_percent']:>5} (x{ratios[1]:.1f})"
                f"  {r['bot_rss_peak_mb']:>6} (x{ratios[2]:.2f})"
                f"  {r['tracebacks']}"
            )
    finally:
        stop_process(proc, grace=60)
        total = tracebacks(workdir / "bot.log")
        print(f"# bot log: {workdir / 'bot.log'}, tracebacks in the whole run: {total}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase-s", type=float, default=8.0)
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[16, 100, 300, 500]
    )
    parser.add_argument("--legit", type=int, default=3)
    parser.add_argument("--max-calls", type=int, default=100)
    parser.add_argument("--bot-src", type=Path, default=ROOT)
    configure_logging("error")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
