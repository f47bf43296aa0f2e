"""CPU per RTP packet on the bot's media path, in one process, over loopback sockets.

    python bench/rtp_path.py [--calls 100,300,500] [--ticks 300] [--against DIR] [--pairs 3]

The full-duplex bench (`full_duplex.py`) measures the whole bot beside its
load generator on a shared box, where the same code varies 2x from run to
run. This one measures only the work that decides how many calls a core
holds: N `RtpSession`s on real UDP sockets from an `RtpPortPool`, each with
its in-band channel on one `InbandDtmfReceiver` wired as `voicebot.call`
wires it (`session.on_payload = channel.feed_g711`), each sending a prompt
(its `PromptPlayer`) to a "phone" socket that sends the caller's speech back
at 50 packets a second, half of them before the tick's read and half before
the mid-tick's. The bench drives the media clock's phases itself, in the
order the clock runs them (SEND, RECEIVE, ANALYSE, MID_RECEIVE, MID_ANALYSE;
the clock's `load` set from the tick's CPU, as the clock sets it from its wall
time), and times each with this thread's CPU clock (user and system: a loopback
send includes its delivery); the phones' sends and drains are not timed.

Printed per N: µs of CPU per packet sent (the SEND phase), per packet read
(both reads, with the in-band channel's feed), per packet analysed (both
analyses), the sum per call and tick, the floor (the same packets sent and
read on the same sockets by a bare loop, between the bot's ticks: the
kernel's part), and what that makes of one core at N calls (the rest of a
bot, SIP, journal and webhooks, comes on top). Each figure is the median
over the ticks, so a tick the box took away counts little.

`--against DIR` runs the same measurement on DIR's `voicebot` (a worktree of
an earlier commit) in child processes, each N's two trees back to back,
`--pairs` times, and prints each tree's best run, the ratio of the bests, and
the ratio within each pair with its median: the host's speed drifts by a third
from one minute to the next here, and a pair run back to back shares it.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("send", "read", "analyse")
FLOOR = ("floor send", "floor read")  # the bare syscalls' share of send and read


def _import_voicebot(src: Path) -> None:
    """`voicebot` from `src` (this tree, or DIR under --against), before anything imports it."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.path.insert(0, str(src))
    import voicebot  # noqa: F401  (its submodules come from its own folder from now on)

    sys.path[0] = str(ROOT)  # bench.* and tests.* from this tree


async def measure(calls: int, ticks: int, warmup: int = 25) -> dict[str, float]:
    import socket

    import numpy as np

    from bench.inband_dtmf import call_audio
    from voicebot.logs import configure_logging
    from voicebot.media.clock import ANALYSE, MID_ANALYSE, MID_RECEIVE, RECEIVE, SEND, MediaClock
    from voicebot.media.g711 import PCMU
    from voicebot.media.inband_receiver import InbandDtmfReceiver
    from voicebot.media.rtp import plain_packet
    from voicebot.media.session import RtpPortPool, RtpSession

    configure_logging("warning")  # a line per session started and closed is not the point
    frames = call_audio(16, np.random.default_rng(7))
    clock = MediaClock(interval=3600.0)  # subscribed to; this bench runs the phases itself
    inband = InbandDtmfReceiver(clock)
    pool = RtpPortPool("127.0.0.1", 40000, 40000 + 4 * calls)
    keys = [0]

    def on_key(key: str) -> None:
        keys[0] += 1

    sessions, phones = [], []
    for i in range(calls):
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind(("127.0.0.1", 0))
        phone.setblocking(False)
        endpoint = await pool.allocate()
        session = RtpSession(endpoint, phone.getsockname(), PCMU, clock, dtmf_payload_type=101)
        await session.start()
        session.on_payload = inband.open(on_key, PCMU).feed_g711
        session.player.play(frames[i % 50 :] * 2)  # a prompt all bench long
        sessions.append(session)
        phones.append((phone, (endpoint.host, endpoint.port)))
    await clock.stop()  # nothing but this coroutine runs the phases from here on

    def phones_send(tick: int, part: range) -> None:
        for i in part:
            phone, bot = phones[i]
            payload = frames[(tick + 7 * i) % len(frames)]
            phone.sendto(plain_packet(PCMU.payload_type, False, tick, 160 * tick, i, payload), bot)

    def phones_drain() -> None:
        for phone, _ in phones:
            try:
                while True:
                    phone.recv(2048)
            except BlockingIOError:
                pass

    def cpu(phase: int, tick: int) -> int:
        t0 = time.thread_time_ns()
        clock._run_phase(tick, phase)
        return time.thread_time_ns() - t0

    # The floor, on the same sockets between the bot's ticks: the same bytes sent
    # and read with nothing around the syscalls but a bare loop (no header, no
    # handler, no checks). What the bot spends above it is its own Python.
    import select

    floor_packet = plain_packet(PCMU.payload_type, False, 1, 160, 1, frames[0])
    floor_socks = [(s.endpoint.sock, s.remote) for s in sessions]
    floor_poll = select.epoll()
    for sock, _ in floor_socks:
        floor_poll.register(sock.fileno(), select.EPOLLIN)
    by_fd = {sock.fileno(): sock.recvfrom for sock, _ in floor_socks}

    def floor_send() -> int:
        t0 = time.thread_time_ns()
        for sock, remote in floor_socks:
            sock.sendto(floor_packet, remote)
        return time.thread_time_ns() - t0

    def floor_read() -> int:
        t0 = time.thread_time_ns()
        while ready := floor_poll.poll(0):
            for fd, _ in ready:
                by_fd[fd](2048)
        return time.thread_time_ns() - t0

    half = calls // 2
    clock_interval = 0.020  # the bot's (the bench clock's own is a placeholder)
    per_tick: dict[str, list[float]] = {name: [] for name in (*PHASES, *FLOOR)}
    for tick in range(1, warmup + ticks + 1):
        spent = dict.fromkeys(PHASES, 0)
        spent["send"] += cpu(SEND, tick)
        phones_send(tick, range(half))
        spent["read"] += cpu(RECEIVE, tick)
        spent["analyse"] += cpu(ANALYSE, tick)
        # As the clock does: the tick's share of the interval, which decides
        # whether the mid-tick analysis runs (voicebot.media.inband_receiver).
        clock.load = (spent["send"] + spent["read"] + spent["analyse"]) / (clock_interval * 1e9)
        phones_send(tick, range(half, calls))
        spent["read"] += cpu(MID_RECEIVE, tick)
        spent["analyse"] += cpu(MID_ANALYSE, tick)
        phones_drain()
        spent["floor send"] = floor_send()
        phones_send(tick, range(calls))
        spent["floor read"] = floor_read()
        phones_drain()
        if tick > warmup:
            for name in (*PHASES, *FLOOR):
                per_tick[name].append(spent[name] / 1e3 / calls)  # µs per call (= per packet)
    floor_poll.close()
    received = sum(s.stats.packets_received for s in sessions)
    for session in sessions:
        await session.close()
    for phone, _ in phones:
        phone.close()
    result = {name: statistics.median(values) for name, values in per_tick.items()}
    result["total"] = sum(result[name] for name in PHASES)
    result["floor"] = result["floor send"] + result["floor read"]
    result["core_pct"] = result["total"] * calls / 20_000 * 100
    result["received_share"] = received / (calls * (warmup + ticks))
    result["keys_per_call_s"] = keys[0] / calls / ((warmup + ticks) * 0.02)
    return result


def _row(tree: str, calls: int, r: dict[str, float], ratio: dict[str, float] | None) -> str:
    cells = "".join(f"{r[name]:>9.2f}" for name in (*PHASES, "total"))
    floor = f"{r['floor send']:>6.2f}+{r['floor read']:<5.2f}" if "floor" in r else f"{'-':>12}"
    line = (f"{tree:<6} {calls:>6}{cells} {floor} {r['core_pct']:>7.1f}% "
            f"{r['received_share']:>8.3f} {r['keys_per_call_s']:>6.2f}")  # fmt: skip
    if ratio:
        line += "   " + " ".join(f"{name} {ratio[name]:.2f}" for name in (*PHASES, "total"))
    return line


def _child(src: Path, calls: list[int], ticks: int) -> dict[int, dict[str, float]]:
    """One measurement of `src`'s voicebot in a fresh process (this script, --json)."""
    out = subprocess.run(
        [sys.executable, __file__, "--src", str(src), "--calls", ",".join(map(str, calls)),
         "--ticks", str(ticks), "--json"],
        check=True, capture_output=True, text=True, timeout=1200, cwd=ROOT,
    ).stdout  # fmt: skip
    return {int(k): v for k, v in json.loads(out.splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="100,300,500")
    parser.add_argument("--ticks", type=int, default=300, help="measured ticks per N (20 ms each)")
    parser.add_argument("--against", type=Path, metavar="DIR", help="a tree to compare with")
    parser.add_argument("--pairs", type=int, default=3, help="alternating runs per tree")
    parser.add_argument("--src", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    calls = [int(x) for x in args.calls.split(",")]
    if args.json:  # a child of --against: measure, one JSON line
        _import_voicebot(args.src)
        results = {n: asyncio.run(measure(n, args.ticks)) for n in calls}
        print(json.dumps(results))
        return
    print(
        "µs of CPU per packet (median over ticks): send, read (with the in-band feed), "
        "analyse; total per call and tick; the floor: a bare sendto + a bare epoll and "
        "recvfrom of the same packets on the same sockets (what no Python can remove); "
        "one core's share at N calls; packets read / "
        "sent by the phones; in-band keys heard per call and second (1 a second sent)"
    )
    head = f"{'tree':<6} {'calls':>6}" + "".join(f"{h:>9}" for h in (*PHASES, "total"))
    print(head + f" {'floor':>12} {'core':>8} {'received':>8} {'keys':>6}")
    if args.against is None:
        _import_voicebot(args.src)
        for n in calls:
            print(_row("this", n, asyncio.run(measure(n, args.ticks)), None), flush=True)
        return
    runs: dict[str, list[dict[int, dict[str, float]]]] = {"this": [], "base": []}
    for _ in range(args.pairs):
        this: dict[int, dict[str, float]] = {}
        base: dict[int, dict[str, float]] = {}
        for n in calls:  # each N's pair back to back
            this.update(_child(ROOT, [n], args.ticks))
            base.update(_child(args.against, [n], args.ticks))
        runs["this"].append(this)
        runs["base"].append(base)
    for n in calls:
        best: dict[str, Any] = {
            tree: min((run[n] for run in tree_runs), key=lambda r: r["total"])
            for tree, tree_runs in runs.items()
        }
        print(_row("base", n, best["base"], None))
        ratio = {k: best["this"][k] / best["base"][k] for k in (*PHASES, "total")}
        print(_row("this", n, best["this"], ratio))
        totals = {t: " ".join(f"{run[n]['total']:.1f}" for run in r) for t, r in runs.items()}
        print(f"{'':13}every run's total, in order: base {totals['base']}; this {totals['this']}")
        # The host's speed drifts between runs: a pair run back to back shares it.
        pairs = [
            t[n]["total"] / b[n]["total"] for t, b in zip(runs["this"], runs["base"], strict=True)
        ]
        print(f"{'':13}this / base per pair: {' '.join(f'{r:.2f}' for r in pairs)}; "
              f"median {statistics.median(pairs):.2f}")  # fmt: skip
    print(f"best of {args.pairs} alternating runs per tree; base = {args.against}")


if __name__ == "__main__":
    main()
