"""Bridge-mode benchmark: CPU of the bot relaying N bridged calls, against N unbridged ones.

    python bench/bridge.py [--n 10,50,100] [--window 5]

For each N, three runs on fresh sockets, each holding 2N RTP sessions in
this process on one `MediaClock` (what the bot holds for N bridged calls):

* ``sessions``  the baseline: every session sends silence and drops what it
  receives (2N plain calls, nothing relayed);
* ``same``      N `MediaBridge`s, both legs PCMU (payload bytes passed through);
* ``convert``   N `MediaBridge`s, PCMU on one leg and PCMA on the other.

The 2N far ends are plain UDP sockets in a child process (``--phones``),
each talking a 425 Hz tone at 50 packets/s, so their cost is not counted here.
CPU % is this process's CPU time over the window divided by wall time
(100 % = one core); ``per call`` is (run − sessions) / N, the bridge's own
cost per bridged call; ``heard`` is packets/s each leg received from its far
end and ``relayed`` packets/s per direction the bridge sent on (both 50 when
nothing was lost; when the child process cannot keep its 2N senders at
50/s, ``heard`` drops first). Of ``--repeat`` runs per cell, the least CPU
and the lowest rates are printed. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicebot.logs import configure_logging  # noqa: E402
from voicebot.media.bridge import MediaBridge  # noqa: E402
from voicebot.media.clock import MediaClock  # noqa: E402
from voicebot.media.g711 import CODECS, PCMA, PCMU  # noqa: E402
from voicebot.media.session import RtpPortPool, RtpSession  # noqa: E402
from voicebot.media.tone import tone_cycle_pcm  # noqa: E402

HOST = "127.0.0.1"
WARMUP_S = 1.0
BOT_PORTS = (24000, 25999)


def phones() -> None:
    """Child process: one talking socket per bot port read from stdin, until stdin closes.

    As light as a phone can be so the child keeps 2N streams at 50 packets/s
    on a busy machine: prebuilt payloads, one `sendto` per stream per 20 ms on
    absolute deadlines, and what the bot sends is never read (the kernel drops
    it once the small receive buffer is full).
    """
    wanted: list[tuple[int, str]] = json.loads(sys.stdin.readline())
    pcm = tone_cycle_pcm(on_s=1.0, off_s=0.0)
    frames = {
        name: [codec.encode(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
        for name, codec in CODECS.items()
    }
    streams = []
    for port, name in wanted:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        streams.append((sock, (HOST, port), CODECS[name].payload_type, frames[name]))
    print(json.dumps([sock.getsockname()[1] for sock, *_ in streams]), flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    header = struct.Struct("!BBHII")
    t0, tick = time.monotonic(), 0
    while not stop.is_set():
        for ssrc, (sock, address, pt, payloads) in enumerate(streams):
            data = header.pack(0x80, pt, tick % 65536, (tick * 160) % 2**32, ssrc)
            with contextlib.suppress(OSError):
                sock.sendto(data + payloads[tick % len(payloads)], address)
        tick += 1
        delay = t0 + tick * 0.020 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for sock, *_ in streams:
        sock.close()


async def run(n: int, mode: str, window: float) -> tuple[float, float, float]:
    """(CPU % of this process, packets/s received per leg, relayed per direction)."""
    clock = MediaClock()
    pool = RtpPortPool(HOST, *BOT_PORTS)
    codecs = [PCMU, PCMA if mode == "convert" else PCMU] * n
    endpoints = [await pool.allocate() for _ in codecs]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--phones",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    wanted = [(e.port, c.name) for e, c in zip(endpoints, codecs, strict=True)]
    child.stdin.write(json.dumps(wanted).encode() + b"\n")
    await child.stdin.drain()
    phone_ports: list[int] = json.loads(await child.stdout.readline())
    sessions = [
        RtpSession(e, (HOST, p), c, clock)
        for e, p, c in zip(endpoints, phone_ports, codecs, strict=True)
    ]
    for session in sessions:
        await session.start()
    bridges = [MediaBridge(sessions[i], sessions[i + 1]) for i in range(0, 2 * n, 2)]
    if mode != "sessions":
        for bridge in bridges:
            bridge.start()
    try:
        await asyncio.sleep(WARMUP_S)
        played = sum(b.a_to_b.stats.played + b.b_to_a.stats.played for b in bridges)
        heard = sum(s.stats.packets_received for s in sessions)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        played = sum(b.a_to_b.stats.played + b.b_to_a.stats.played for b in bridges) - played
        heard = sum(s.stats.packets_received for s in sessions) - heard
    finally:
        for bridge in bridges:
            bridge.stop()
        for session in sessions:
            await session.close()
        await clock.stop()
        child.stdin.close()
        await child.wait()
    return 100 * cpu / wall, heard / wall / (2 * n), played / wall / (2 * n)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="10,50,100", help="bridged calls per run, comma-separated")
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs per cell; the least CPU is printed (noise)"
    )
    parser.add_argument("--phones", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging("error", "console")
    print(f"bridge bench: {os.cpu_count()} CPUs, window {args.window:g} s, CPU % of one core")
    print(f"{'N':>4} {'sessions':>9} {'same':>7} {'convert':>8} {'call':>7} "
          f"{'bridge':>7} {'ratio':>6} {'heard':>6} {'relayed':>8}")  # fmt: skip
    for n in (int(x) for x in args.n.split(",")):
        cells: dict[str, list[tuple[float, float, float]]] = {
            "sessions": [],
            "same": [],
            "convert": [],
        }
        for _ in range(args.repeat):  # interleaved, so a noisy moment hits every mode alike
            for mode, results in cells.items():
                results.append(await run(n, mode, args.window))
        base, same, convert = (min(cpu for cpu, _, _ in cells[m]) for m in cells)
        heard = min(h for m in cells for _, h, _ in cells[m])
        relayed = min(r for m in ("same", "convert") for _, _, r in cells[m])
        print(
            f"{n:>4} {base:>8.1f}% {same:>6.1f}% {convert:>7.1f}% {convert / n:>6.2f}% "
            f"{(convert - base) / n:>6.3f}% {convert / base:>5.2f}x {heard:>6.1f} {relayed:>8.1f}"
        )
    print("call = convert / N: CPU per bridged call, its two RTP legs included;")
    print("bridge = (convert - sessions) / N: what relaying adds per call over two plain legs;")
    print("ratio = convert / sessions; heard = packets/s the far ends got to each leg (50 =")
    print("all they should send); relayed = packets/s per direction sent on by the bridge.")


if __name__ == "__main__":
    if "--phones" in sys.argv:
        phones()
    else:
        asyncio.run(main())
