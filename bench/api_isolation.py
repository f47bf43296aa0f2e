"""API isolation benchmark (issue 6 item 10): does HTTP load stall the audio?

    python bench/api_isolation.py [--calls 100] [--clients 200] [--rows 100000]
                                  [--days 90] [--window 10] [--bot-src PATH]
                                  [--api-workers N]

One bot process (`python -m voicebot run`, peer mode, free ports, a temporary
journal seeded with `--rows` PBX calls over `--days` days the way
bench/journal.py seeds it: executemany, about 7 s for 100 000) carries
`--calls` calls placed by a
light generator in this process (our own `UserAgent`; each call's RTP lands on
a plain UDP socket read with kernel receive timestamps, SO_TIMESTAMPNS, so
this process's own load does not colour the figures). Two windows of
`--window` seconds, same calls, same run:

* baseline: no HTTP load;
* loaded: `--clients` aiohttp clients (a separate process, started inside
  the window, so their first burst counts) hammer the heaviest endpoints:
  every candidate (`/api/v1/calls?limit=500`, each report over the whole
  journal as JSON and CSV) is timed once before the calls go up, and the
  clients cycle over the slowest one, the slowest report, and
  `/api/v1/calls?limit=500`.

Per window it prints the bot's RTP send gap as received (p50/p99/max pooled
over calls), packets received per call, media clock skips (the bot's
`voicebot_media_clock_skipped_ticks_total` on /metrics), OPTIONS round trip
(p50/max, one every 100 ms), the bot's CPU and peak RSS (and its API worker
processes', `--api-workers`), and, for the loaded
window, HTTP answers by status and their latency. Then loaded/baseline
ratios, and the load average (`uptime`) before and after.
Targets (issue 6): no skip and p99 <= 25 ms with 100 calls under 200 clients.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bot_process import LOOPBACK, bot_env, stop_process, tracebacks  # noqa: E402
from bench.journal import seed  # noqa: E402
from tests.ports import free_port, free_udp_span  # noqa: E402
from voicebot.journal.database import open_database  # noqa: E402
from voicebot.logs import configure_logging  # noqa: E402
from voicebot.settings import SipSettings  # noqa: E402
from voicebot.sip.call import IncomingCall, OutgoingCall  # noqa: E402
from voicebot.sip.user_agent import UserAgent  # noqa: E402

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
REPORTS = ("missed", "categories", "hourly", "summary", "coverage", "callbacks")
EVERYTHING = "from=2000-01-01"
CALLS_PAGE = "/api/v1/calls?limit=500"


# ------------------------------------------------------------------ RTP receivers


class RtpSink:
    """A UDP socket the bot sends one call's RTP to; keeps kernel arrival times."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((LOOPBACK, port))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.arrivals: list[float] = []
        self.recording = False

    def on_readable(self) -> None:
        while True:
            try:
                _, ancdata, _, _ = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return
            if not self.recording:
                continue
            stamp = time.time()
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    stamp = sec + nsec / 1e9
            self.arrivals.append(stamp)

    def gaps_ms(self) -> list[float]:
        a = self.arrivals
        return [(a[i] - a[i - 1]) * 1000 for i in range(1, len(a))]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------ the bot


async def fill_journal(db: Path, rows: int, days: int) -> float:
    """Seconds it took: the schema by `open_database`, the rows by bench/journal.py."""
    began = time.perf_counter()
    conn = await open_database(db)
    await conn.close()
    seed(db, rows, days)
    return time.perf_counter() - began


def start_bot(
    workdir: Path,
    sip_port: int,
    http_port: int,
    rtp: tuple[int, int],
    bot_src: Path = ROOT,
    *,
    flood_defaults: bool = False,
    slow_callback_ms: float | None = None,
    api_workers: int | None = None,
) -> subprocess.Popen[bytes]:
    """The bot as bot_process.bot_env sets it up (`flood_defaults` as there),
    logging JSON to bot.log. `slow_callback_ms`: run the bot in asyncio debug
    mode, which logs (to bot.log) every callback that held the loop longer than
    that."""
    env = bot_env(
        workdir, sip_port, http_port, rtp, src=bot_src, flood_defaults=flood_defaults,
        extra={"VOICEBOT_LOG__FORMAT": "json"},
    )  # fmt: skip
    if api_workers is not None:  # unset: the bot's default (a checkout may predate it)
        env["VOICEBOT_HTTP__API_WORKERS"] = str(api_workers)
    command = [sys.executable, "-m", "voicebot", "run"]
    if slow_callback_ms is not None:
        env["PYTHONASYNCIODEBUG"] = "1"
        command = [sys.executable, "-c", SLOW_CALLBACKS, str(slow_callback_ms / 1000), "run"]
    return subprocess.Popen(
        command,
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "bot.log", "wb"),
    )


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.partition(b"\r\n\r\n")[2]


async def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = await http_get(port, "/healthz")
            if status in (200, 503):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the bot did not start; see bot.log")
        await asyncio.sleep(0.2)


#: `python -m voicebot run` with asyncio debug mode's slow-callback threshold
#: lowered (0.1 s by default); asyncio logs each as "Executing ... took".
SLOW_CALLBACKS = """
import asyncio.base_events, runpy, sys
threshold = float(sys.argv.pop(1))
init = asyncio.base_events.BaseEventLoop.__init__
def lowered(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.slow_callback_duration = threshold
asyncio.base_events.BaseEventLoop.__init__ = lowered
sys.argv[0] = "voicebot"
runpy.run_module("voicebot", run_name="__main__", alter_sys=True)
"""


def slow_callbacks(log: Path, start: int, end: int) -> list[tuple[float, str]]:
    """(seconds, what) of each slow callback asyncio logged between two offsets, longest first."""
    found = []
    with log.open("rb") as f:
        f.seek(start)
        for line in f.read(end - start).decode(errors="replace").splitlines():
            m = re.match(r"Executing (.*) took (\d+\.\d+) seconds", line)
            if m:
                found.append((float(m.group(2)), m.group(1)))
    return sorted(found, reverse=True)


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")  # pip install py-spy into the venv
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "")


def children_cpu_s(bot: psutil.Process) -> dict[int, float]:
    """CPU seconds (user + system) of each of the bot's child processes."""
    spent: dict[int, float] = {}
    for child in bot.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        spent[child.pid] = times.user + times.system
    return spent


def children_rss(bot: psutil.Process) -> int:
    total = 0
    for child in bot.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def heaviest_endpoints(http_port: int) -> tuple[str, str]:
    """(the slowest endpoint of all, the slowest report), each timed once,
    sequentially, on the idle bot; prints the table."""
    candidates = [CALLS_PAGE, f"{CALLS_PAGE}&{EVERYTHING}"]
    for name in REPORTS:
        candidates += [f"/api/v1/reports/{name}?{EVERYTHING}"]
        candidates += [f"/api/v1/reports/{name}?{EVERYTHING}&format=csv"]
    costs: dict[str, float] = {}
    print("# one request each, idle bot:", flush=True)
    for path in candidates:
        t0 = time.monotonic()
        status, body = await http_get(http_port, path)
        costs[path] = time.monotonic() - t0
        print(f"#   {costs[path] * 1000:8.0f} ms {len(body):>9} bytes {status} {path}", flush=True)
    heaviest = max(costs, key=costs.__getitem__)
    reports_only = [p for p in costs if p.startswith("/api/v1/reports/")]
    return heaviest, max(reports_only, key=costs.__getitem__)


class SkipCounter:
    """Media clock skips: the bot's /metrics counter when it has one, else the
    `media_clock.skipped` lines its log gained (json format, `ticks`)."""

    def __init__(self, log: Path, http_port: int) -> None:
        self.log, self.http_port = log, http_port
        self._offset = 0
        self._metric = 0.0

    async def _read_metric(self) -> float | None:
        _, body = await http_get(self.http_port, "/metrics")
        m = re.search(rb"^voicebot_media_clock_skipped_ticks_total (\S+)", body, re.M)
        return float(m.group(1)) if m else None

    async def mark(self) -> None:
        self._offset = self.log.stat().st_size
        self._metric = await self._read_metric() or 0.0

    async def since_mark(self) -> float:
        metric = await self._read_metric()
        if metric is not None:
            return metric - self._metric
        with self.log.open("rb") as f:
            f.seek(self._offset)
            text = f.read().decode(errors="replace")
        ticks = 0
        for line in text.splitlines():
            if '"media_clock.skipped"' in line:
                try:
                    ticks += int(json.loads(line).get("ticks", 0))
                except ValueError:
                    ticks += 1
        return float(ticks)


# ------------------------------------------------------------------ OPTIONS pinger


async def options_rtts(sip_port: int, stop: asyncio.Event) -> list[float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    port = sock.getsockname()[1]
    rtts: list[float] = []
    n = 0
    try:
        while not stop.is_set():
            n += 1
            msg = (
                f"OPTIONS sip:bot@{LOOPBACK} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK-ping-{n};rport\r\n"
                f"From: <sip:ping@{LOOPBACK}>;tag=p{n}\r\nTo: <sip:bot@{LOOPBACK}>\r\n"
                f"Call-ID: ping-{n}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            t0 = time.monotonic()
            sock.sendto(msg, (LOOPBACK, sip_port))
            try:
                await asyncio.wait_for(loop.sock_recv(sock, 65535), 2.0)
                rtts.append((time.monotonic() - t0) * 1000)
            except TimeoutError:
                rtts.append(2000.0)
            await asyncio.sleep(0.1)
    finally:
        sock.close()
    return rtts


# ------------------------------------------------------------------ HTTP hammer


HAMMER = r"""
import asyncio, json, sys, time
from collections import Counter
import aiohttp
port, clients, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
paths = sys.argv[4:]
async def main():
    statuses, lat = Counter(), []
    end = time.monotonic() + duration
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as s:
        async def client(i):
            n = i
            while time.monotonic() < end:
                path = paths[n % len(paths)]; n += 1
                t0 = time.monotonic()
                try:
                    async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                        await r.read()
                        statuses[r.status] += 1
                except Exception as e:
                    statuses[type(e).__name__] += 1
                lat.append((time.monotonic() - t0) * 1000)
        await asyncio.gather(*(client(i) for i in range(clients)))
    lat.sort()
    print(json.dumps({"statuses": {str(k): v for k, v in statuses.items()},
                      "p50_ms": lat[len(lat)//2] if lat else None,
                      "p99_ms": lat[int(len(lat)*0.99)] if lat else None,
                      "requests": len(lat)}))
asyncio.run(main())
"""


# ------------------------------------------------------------------ one window


async def window(
    label: str,
    bot: psutil.Process,
    sinks: list[RtpSink],
    skips: SkipCounter,
    sip_port: int,
    http_port: int,
    seconds: float,
    hammer: list[str] | None,
    spy: Path | None = None,
) -> dict[str, Any]:
    await skips.mark()
    log_offset = skips.log.stat().st_size
    spying = None
    if spy is not None and py_spy():
        spying = await asyncio.create_subprocess_exec(
            py_spy(), "record", "--nonblocking", "--threads", "--idle", "--format", "raw",
            "-r", "200", "-p", str(bot.pid), "-d", str(int(seconds)), "-o", str(spy),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    for sink in sinks:
        sink.arrivals.clear()
        sink.recording = True
    proc = None
    if hammer:
        # Inside the window: the first burst of 200 requests is the worst moment.
        # Niced: in production the clients are other machines; here they share
        # the bot's 2 cores and must not win the CPU from it by scheduling alone.
        proc = await asyncio.create_subprocess_exec(
            "nice",
            "-n",
            "10",
            sys.executable,
            "-c",
            HAMMER,
            *hammer,
            stdout=asyncio.subprocess.PIPE,
        )
    stop = asyncio.Event()
    pinger = asyncio.create_task(options_rtts(sip_port, stop))
    bot.cpu_percent(None)
    workers_cpu_before = children_cpu_s(bot)
    began = time.monotonic()
    rss_peak = workers_rss_peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rss_peak = max(rss_peak, bot.memory_info().rss)
        workers_rss_peak = max(workers_rss_peak, children_rss(bot))
        await asyncio.sleep(0.25)
    cpu = bot.cpu_percent(None)
    workers_cpu = children_cpu_s(bot)
    elapsed = time.monotonic() - began
    workers_percent = (
        100
        * sum(spent - workers_cpu_before.get(pid, 0.0) for pid, spent in workers_cpu.items())
        / elapsed
    )
    for sink in sinks:
        sink.recording = False
    stop.set()
    # Skips and slow callbacks of the window itself, not of the clients' drain after it.
    skipped = await skips.since_mark()
    log_end = skips.log.stat().st_size
    rtts = await pinger
    http: dict[str, Any] = {}
    if proc is not None:
        out, _ = await proc.communicate()
        http = json.loads(out.decode() or "{}")
        http["ok_per_s"] = round(http.get("statuses", {}).get("200", 0) / seconds, 1)
    if spying is not None:
        await spying.wait()
        print(f"# py-spy ({label}): {spy}", flush=True)
    slow = slow_callbacks(skips.log, log_offset, log_end)
    gaps = [g for s in sinks for g in s.gaps_ms()]
    result = {
        "window": label,
        "gap_p50_ms": round(percentile(gaps, 50), 2),
        "gap_p99_ms": round(percentile(gaps, 99), 2),
        "gap_max_ms": round(max(gaps) if gaps else float("nan"), 1),
        "packets_per_call": round(statistics.mean(len(s.arrivals) for s in sinks), 1),
        "media_clock_skips": skipped,
        "options_p50_ms": round(percentile(rtts, 50), 2),
        "options_max_ms": round(max(rtts) if rtts else float("nan"), 1),
        "bot_cpu_percent": round(cpu, 1),
        "bot_rss_peak_mb": round(rss_peak / 2**20, 1),
        # The bot's child processes: its API workers (http.api_workers).
        "workers_cpu_percent": round(workers_percent, 1),
        "workers_rss_peak_mb": round(workers_rss_peak / 2**20, 1),
        "http": http,
    }
    print(json.dumps(result), flush=True)
    if slow:
        print(f"# slow callbacks ({label}): {len(slow)}, longest first:", flush=True)
        for took, what in slow[:12]:
            print(f"#   {took * 1000:7.1f} ms  {what[:160]}", flush=True)
    return result


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="api-isolation-"))
    print(f"# uptime before: {uptime()}", flush=True)
    took = await fill_journal(workdir / "voicebot.db", args.rows, args.days)
    print(
        f"# journal: {args.rows} calls over {args.days} days in {workdir}, seeded in {took:.1f} s"
    )
    sip_port, http_port = free_port(), free_port(udp=False)
    bot_rtp = free_udp_span(2 * args.calls + 40)
    rtp = (bot_rtp, bot_rtp + 2 * args.calls + 39)
    proc = start_bot(
        workdir,
        sip_port,
        http_port,
        rtp,
        args.bot_src,
        slow_callback_ms=args.slow_callback_ms,
        api_workers=args.api_workers,
    )
    workers = "default" if args.api_workers is None else args.api_workers
    print(f"# bot: voicebot from {args.bot_src}, http.api_workers {workers}", flush=True)
    phone: UserAgent | None = None
    loop = asyncio.get_running_loop()
    sinks: list[RtpSink] = []
    calls: list[OutgoingCall] = []
    try:
        await wait_http(http_port)
        bot = psutil.Process(proc.pid)
        skips = SkipCounter(workdir / "bot.log", http_port)
        heaviest, heaviest_report = await heaviest_endpoints(http_port)
        refusals: set[asyncio.Task[None]] = set()

        def refuse(call: IncomingCall) -> None:
            task = loop.create_task(call.reject(486))
            refusals.add(task)
            task.add_done_callback(refusals.discard)

        phone = UserAgent(
            SipSettings(mode="peer", bind_host=LOOPBACK, bind_port=0, user_agent="bench"), refuse
        )
        await phone.start()
        for i in range(args.calls):
            sink = RtpSink(0)  # any free port: the bot sends where our SDP says
            loop.add_reader(sink.sock.fileno(), sink.on_readable)
            sinks.append(sink)
            calls.append(
                phone.invite(
                    f"{LOOPBACK}:{sip_port}",
                    from_user=f"2{i:02d}",
                    local_rtp=(LOOPBACK, sink.port),
                    codecs=["PCMU"],
                )
            )
            await asyncio.sleep(1 / 50)  # 50 calls/s
        answered = await asyncio.gather(
            *(c.wait_answered(timeout=20) for c in calls), return_exceptions=True
        )
        up = sum(1 for a in answered if not isinstance(a, BaseException))
        print(f"# calls up: {up}/{args.calls}", flush=True)
        await asyncio.sleep(1.0)
        paths = list(dict.fromkeys([heaviest, heaviest_report, CALLS_PAGE]))
        print(f"# hammered: {' '.join(paths)}", flush=True)
        spies = {}
        if args.py_spy:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            spies = {name: args.py_spy / f"{name}.txt" for name in ("baseline", "loaded")}
        base = await window(
            "baseline", bot, sinks, skips, sip_port, http_port, args.window, None,
            spies.get("baseline"),
        )  # fmt: skip
        hammer = [str(http_port), str(args.clients), str(args.window), *paths]
        loaded = await window(
            "loaded", bot, sinks, skips, sip_port, http_port, args.window, hammer,
            spies.get("loaded"),
        )  # fmt: skip
        print("# loaded / baseline:")
        for key in (
            "gap_p99_ms",
            "gap_max_ms",
            "packets_per_call",
            "options_p50_ms",
            "options_max_ms",
            "bot_cpu_percent",
            "bot_rss_peak_mb",
            "workers_cpu_percent",
        ):
            b, loaded_value = base[key], loaded[key]
            ratio = loaded_value / b if b else float("nan")
            print(f"#   {key:18} {b:>9} -> {loaded_value:>9}  x{ratio:.2f}")
        print(
            f"#   media_clock_skips  {base['media_clock_skips']} -> {loaded['media_clock_skips']}"
        )
    finally:
        for call in calls:
            if not call.ended.done():
                await call.hangup()
        if phone is not None:
            await phone.stop()
        for sink in sinks:
            loop.remove_reader(sink.sock.fileno())
            sink.sock.close()
        stop_process(proc, grace=30)
        print(f"# bot log: {workdir / 'bot.log'}, tracebacks: {tracebacks(workdir / 'bot.log')}")
        print(f"# uptime after: {uptime()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100_000, help="calls in the journal")
    parser.add_argument("--days", type=int, default=90, help="the span they cover, ending now")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--bot-src",
        type=Path,
        default=ROOT,
        help="checkout whose voicebot the bot runs (a worktree of the old code: before/after)",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        help="http.api_workers for the bot (0: reports computed in its own process);"
        " default: the bot's own default",
    )
    parser.add_argument(
        "--slow-callback-ms",
        type=float,
        help="run the bot in asyncio debug mode and list the callbacks that held its loop"
        " longer than this (a diagnosis: debug mode slows the bot)",
    )
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="py-spy record the bot in each window"
    )
    configure_logging("error")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
