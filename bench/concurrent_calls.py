"""Concurrent-calls benchmark: voicebot against a bare stock-pyVoIP phone, same load, one run.

    python bench/concurrent_calls.py [--n 1,50,100,200,300] [--window 10] [--rate 50]
                                     [--skip-stock] [--quick] [--py-spy DIR]

For each N and each implementation a fresh answering process is started, N
SIPp calls are placed into it (``-m N -l N -r RATE``), every call keys
``3#1500#`` as RFC 4733 (SIPp ``play_pcap_audio``, timed to fall inside the
window) and holds until the window is over, then the caller hangs up.

What is measured, on the answering process only:

* what it SENDS per RTP stream, as received: ``dumpcap`` on ``lo`` with a
  filter on the implementation's RTP source-port range (kernel timestamps,
  nothing in the media path); per stream the inter-arrival times inside the
  window; p50/p99/max pooled over all streams, packets/s per stream
  (mean and the worst stream), and how many streams had their own p99 <= 25 ms;
* CPU % (psutil ``cpu_percent`` over the window), peak RSS and thread count
  sampled every 0.5 s during the window;
* digits heard vs sent: voicebot's journal (``categorizations.digits``: the
  keys the menu heard, written when the call ends), the baseline's log of
  ``call.get_dtmf()``; "exact" counts calls that heard ``3#1500#`` exactly once.

"calls held at p99 <= 25 ms" is the largest N run where every call came up
and the pooled p99 stayed <= 25 ms. Numbers are printed, never asserted.
See bench/README.md for the stock-pyVoIP registrar/response-routing setup.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bot_process import LOOPBACK, bot_env, start_py_spy, stop_process, wait_healthy, watch  # noqa: E402
from bench.bot_process import start_bot as start_bot_process  # noqa: E402
from tests.ports import free_port, free_udp_span  # noqa: E402
from tests.sipp_harness.pcap import write_dtmf_pcap  # noqa: E402
from tests.sipp_harness.runner import scenario_path  # noqa: E402

KEYS = "3#1500#"  # category 3 ("existing order"), value 1500: the menu then waits to confirm
TARGET_P99_MS = 25.0
TARGET_RSS_MB = 150.0
BOT_RTP = (20000, 21999)
STOCK_RTP = (22000, 23999)
SETTLE_S = 2.0  # after the last INVITE: stock pyVoIP answers 1 s after the INVITE
PRESS_MS, GAP_MS = 100, 200


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class CallFigures:
    """What a run of `n` calls measured of the answerer, here and in full_duplex.py:
    RTP send intervals as received (ms; pkt/s per stream), its CPU %, peak RSS
    (MB) and threads, and the digits heard of those sent (`exact`: calls whose
    journal holds the keys once each, of `calls_logged`)."""

    n: int
    ok: bool = True
    note: str = ""
    streams: int = 0
    p50: float = math.nan
    p99: float = math.nan
    max_ms: float = math.nan
    pps_mean: float = math.nan
    pps_min: float = math.nan
    streams_p99_ok: int = 0
    cpu: float = math.nan
    rss_mb: float = math.nan
    threads: int = 0
    heard: int = 0
    sent: int = 0
    exact: int = 0
    calls_logged: int = 0
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class RunResult(CallFigures):
    impl: str
    sipp_ok: int = 0
    sipp_failed: int = 0

    @property
    def held(self) -> bool:
        return self.ok and self.streams >= self.n and self.p99 <= TARGET_P99_MS


# --------------------------------------------------------------------------- capture


def read_capture(path: Path, port_lo: int, port_hi: int) -> dict[int, list[float]]:
    """Per UDP source port in [port_lo, port_hi]: arrival times (s, epoch) from a libpcap file."""
    data = path.read_bytes() if path.exists() else b""
    out: dict[int, list[float]] = defaultdict(list)
    if len(data) < 24:
        return out
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    l2 = {1: 14, 113: 16, 0: 4}[linktype]
    rec = struct.Struct(endian + "IIII")
    div = 1e9 if nano else 1e6
    off = 24
    end = len(data)
    while off + 16 <= end:
        sec, frac, caplen, _ = rec.unpack_from(data, off)
        off += 16
        ip = off + l2
        if caplen >= l2 + 24 and data[ip] >> 4 == 4 and data[ip + 9] == 17:
            ihl = (data[ip] & 0x0F) * 4
            sport = (data[ip + ihl] << 8) | data[ip + ihl + 1]
            if port_lo <= sport <= port_hi:
                out[sport].append(sec + frac / div)
        off += caplen
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def analyse(res: RunResult, times: dict[int, list[float]], w0: float, w1: float) -> None:
    pooled: list[float] = []
    pps: list[float] = []
    for ts in times.values():
        inside = [t for t in ts if w0 <= t <= w1]
        if len(inside) < 2:
            continue
        iv = sorted((b - a) * 1000 for a, b in itertools.pairwise(inside))
        pooled.extend(iv)
        pps.append(len(inside) / (w1 - w0))
        if percentile(iv, 99) <= TARGET_P99_MS:
            res.streams_p99_ok += 1
    res.streams = len(pps)
    if pooled:
        pooled.sort()
        res.p50, res.p99, res.max_ms = (
            percentile(pooled, 50),
            percentile(pooled, 99),
            pooled[-1],
        )
        res.pps_mean, res.pps_min = statistics.fmean(pps), min(pps)


# --------------------------------------------------------------------------- processes


def start_capture(path: Path, lo: int, hi: int) -> subprocess.Popen[bytes]:
    dumpcap = shutil.which("dumpcap") or shutil.which("tshark")
    if dumpcap is None:
        raise SystemExit("dumpcap/tshark not found (apt-get install tshark)")
    argv = [dumpcap, "-i", "lo", "-f", f"udp and src portrange {lo}-{hi}", "-P", "-q"]
    argv += ["-B", "64", "-s", "64", "-w", str(path)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    # dumpcap says "Capturing on 'Loopback: lo'" once the filter is installed
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    buf = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(BlockingIOError, TypeError):
            buf += proc.stderr.read() or b""
        if b"Capturing on" in buf:
            time.sleep(0.3)
            return proc
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"dumpcap did not start: {buf.decode(errors='replace')}")


def start_sipp(
    target: str,
    n: int,
    rate: float,
    local_port: int,
    pcap: Path,
    hold_ms: int,
    timeout_s: float,
    tmp: Path,
) -> subprocess.Popen[bytes]:
    mp = free_udp_span(3)
    argv = [
        shutil.which("sipp") or "sipp", "-sf", str(scenario_path("uac_hangup")), target,
        "-m", str(n), "-l", str(n), "-r", f"{rate:g}", "-rp", "1000",
        "-i", LOOPBACK, "-p", str(local_port), "-mi", LOOPBACK, "-mp", str(mp),
        "-timeout", f"{round(timeout_s)}s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(tmp / "sipp_errors.log"),
        "-trace_stat", "-stf", str(tmp / "sipp_stats.csv"), "-fd", "1",
        "-s", "voicebot",
        "-key", "pbx_call_id", "bench", "-key", "client_number", "79990000001",
        "-key", "manager", "bench", "-key", "codec_pt", "0", "-key", "codec_name", "PCMU",
        "-key", "pcap", str(pcap), "-key", "hangup_after_ms", str(hold_ms),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "sipp_stderr.txt").open("wb"))  # fmt: skip


def sipp_counts(tmp: Path) -> tuple[int, int]:
    try:
        rows = [r for r in csv.reader((tmp / "sipp_stats.csv").read_text().splitlines(),
                                      delimiter=";") if r]  # fmt: skip
    except FileNotFoundError:
        return 0, 0
    if len(rows) < 2:
        return 0, 0
    last = dict(zip(rows[0], rows[-1], strict=False))
    return int(last.get("SuccessfulCall(C)", 0) or 0), int(last.get("FailedCall(C)", 0) or 0)


def start_bot(tmp: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    sip_port, http_port = free_port(), free_port(udp=False)
    proc = start_bot_process(tmp, bot_env(tmp, sip_port, http_port, BOT_RTP))
    wait_healthy(proc, http_port, tmp)
    return proc, sip_port, http_port


def _register_ok(request: bytes) -> bytes:
    lines = request.decode("utf-8", "replace").split("\r\n")
    keep = [ln for ln in lines if ln.split(":", 1)[0].strip().lower()
            in ("via", "from", "call-id", "cseq", "contact")]  # fmt: skip
    to = next((ln for ln in lines if ln.lower().startswith("to:")), "To: <sip:bench@127.0.0.1>")
    head = ["SIP/2.0 200 OK", *keep, f"{to};tag=benchreg", "Expires: 3600", "Content-Length: 0"]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def start_stock(tmp: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start the pyVoIP phone; answer its REGISTER on the port the SIPp caller will use."""
    server_port = free_port()
    sip_port = free_port()
    ready = tmp / "stock_ready"
    reg = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reg.bind((LOOPBACK, server_port))
    reg.settimeout(0.2)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "stock_pyvoip_answer.py"),
         "--server", LOOPBACK, "--server-port", str(server_port), "--sip-port", str(sip_port),
         "--rtp-low", str(STOCK_RTP[0]), "--rtp-high", str(STOCK_RTP[1]),
         "--digits-log", str(tmp / "stock_digits.log"), "--ready-file", str(ready)],
        cwd=tmp, stdin=subprocess.DEVNULL,
        stdout=(tmp / "stock_stdout.txt").open("wb"), stderr=(tmp / "stock_stderr.txt").open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("stock pyVoIP did not start: "
                                   + (tmp / "stock_stderr.txt").read_text()[-2000:])  # fmt: skip
            try:
                data, addr = reg.recvfrom(8192)
            except TimeoutError:
                continue
            if data.startswith(b"REGISTER"):
                reg.sendto(_register_ok(data), addr)
    except BaseException:
        stop_process(proc, signal.SIGKILL)
        raise
    finally:
        reg.close()
    return proc, sip_port, server_port


# --------------------------------------------------------------------------- one run


def run_one(impl: str, n: int, args: argparse.Namespace, root_tmp: Path) -> RunResult:
    res = RunResult(n, impl=impl)
    tmp = Path(tempfile.mkdtemp(prefix=f"{impl}-{n}-", dir=root_tmp))
    ramp = n / args.rate
    lead_in_s = ramp + SETTLE_S + 0.5
    pcap = write_dtmf_pcap(tmp / "dtmf.pcap", KEYS, press_ms=PRESS_MS, gap_ms=GAP_MS,
                           lead_in_ms=round(lead_in_s * 1000))  # fmt: skip
    hold_ms = round((ramp + SETTLE_S + args.window + 1.0) * 1000)
    sipp_timeout = ramp + hold_ms / 1000 + 20
    lo, hi = BOT_RTP if impl == "voicebot" else STOCK_RTP
    proc = sipp = cap = spy = None
    try:
        if impl == "voicebot":
            proc, sip_port, _ = start_bot(tmp)
            sipp_port = free_port()
        else:
            proc, sip_port, sipp_port = start_stock(tmp)
        ps = psutil.Process(proc.pid)
        cap = start_capture(tmp / "rtp.pcap", lo, hi)
        t_sipp = time.time()
        sipp = start_sipp(f"{LOOPBACK}:{sip_port}", n, args.rate, sipp_port, pcap, hold_ms,
                          sipp_timeout, tmp)  # fmt: skip
        w0 = t_sipp + ramp + SETTLE_S
        w1 = w0 + args.window
        time.sleep(max(0.0, w0 - time.time()))
        ps.cpu_percent(None)
        if args.py_spy and impl == "voicebot" and shutil.which("py-spy"):
            out = Path(args.py_spy) / f"voicebot-{n}.txt"
            spy = start_py_spy("py-spy", proc.pid, args.window, out)
            res.extra["py_spy"] = str(out)
        res.cpu, res.rss_mb, res.threads = watch(ps, w1, time.time)
        if math.isnan(res.cpu):
            res.ok, res.note = False, "process died in the window"
        time.sleep(0.3)
        stop_process(cap, signal.SIGINT)
        cap = None
        try:
            sipp.wait(timeout=max(5.0, t_sipp + sipp_timeout + 5 - time.time()))
        except subprocess.TimeoutExpired:
            res.note = (res.note + " sipp killed").strip()
        stop_process(sipp, signal.SIGKILL)
        sipp = None
        res.sipp_ok, res.sipp_failed = sipp_counts(tmp)
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(10)
        time.sleep(0.5 if impl == "voicebot" else 1.0)  # let BYE handling write the digits
        stop_process(proc, signal.SIGTERM, grace=15)
        proc = None
        analyse(res, read_capture(tmp / "rtp.pcap", lo, hi), w0, w1)
        heard = _digits(impl, tmp)
        res.calls_logged = len(heard)
        res.heard = sum(len(d) for d in heard)
        res.exact = sum(d == KEYS for d in heard)
        res.sent = len(KEYS) * max(res.streams, res.calls_logged)
        if res.streams < n:
            res.note = (res.note + f" {n - res.streams} calls without media").strip()
    except Exception as exc:
        res.ok, res.note = False, f"{type(exc).__name__}: {exc}"[:200]
    finally:
        for p in (spy, cap, sipp):
            stop_process(p, signal.SIGKILL)
        stop_process(proc, signal.SIGTERM, grace=10)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            res.extra["tmp"] = str(tmp)
    return res


def _digits(impl: str, tmp: Path) -> list[str]:
    if impl == "voicebot":
        db = tmp / "voicebot.db"
        if not db.exists():
            return []
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return [r[0] for r in conn.execute("SELECT digits FROM categorizations")]
    log = tmp / "stock_digits.log"
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        _, _, digits = line.partition(" ")
        out.append("" if digits == "-" else digits)
    return out


# --------------------------------------------------------------------------- output


def cell(x: float, nd: int = 1) -> str:
    """A table cell: `x` to `nd` decimals, "-" for NaN (not measured)."""
    return "-" if x != x else f"{x:.{nd}f}"


HEADER = (
    f"{'impl':<9} {'N':>4} {'up':>4} {'sipp ok/fail':>12} {'p50':>6} {'p99':>7} {'max':>7} "
    f"{'pkt/s':>6} {'min':>6} {'p99ok':>5} {'CPU%':>6} {'RSS MB':>7} {'thr':>5} "
    f"{'digits':>11} {'exact':>9}  note"
)


def row(r: RunResult) -> str:
    return (
        f"{r.impl:<9} {r.n:>4} {r.streams:>4} {f'{r.sipp_ok}/{r.sipp_failed}':>12} "
        f"{cell(r.p50):>6} {cell(r.p99):>7} {cell(r.max_ms):>7} {cell(r.pps_mean):>6} "
        f"{cell(r.pps_min):>6} {r.streams_p99_ok:>5} {cell(r.cpu, 0):>6} {cell(r.rss_mb):>7} "
        f"{r.threads:>5} {f'{r.heard}/{r.sent}':>11} {f'{r.exact}/{r.calls_logged}':>9}  "
        f"{r.note}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description="N concurrent SIPp calls: voicebot vs stock pyVoIP")
    p.add_argument(
        "--n",
        default="1,50,100,200,300",
        help="comma-separated call counts (300 is past stock pyVoIP's limit)",
    )
    p.add_argument("--window", type=float, default=10.0, help="measurement window, seconds")
    p.add_argument("--rate", type=float, default=50.0, help="SIPp call rate, calls/s")
    p.add_argument("--skip-stock", action="store_true", help="voicebot only")
    p.add_argument("--quick", action="store_true", help="smoke run: N=1,20, 4 s window")
    p.add_argument("--py-spy", metavar="DIR", help="py-spy record voicebot in each window")
    p.add_argument("--keep", action="store_true", help="keep per-run temp dirs (captures, logs)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args()
    if args.quick:
        args.n, args.window = "1,20", 4.0
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    impls = ["voicebot"] if args.skip_stock else ["voicebot", "stock"]
    if os.geteuid() != 0:
        print("note: SIPp play_pcap_audio and dumpcap on lo need root/CAP_NET_RAW", file=sys.stderr)

    print(f"# {len(ns)} loads x {len(impls)} impls, window {args.window:g} s, "
          f"rate {args.rate:g} calls/s, keys {KEYS!r} per call, {os.cpu_count()} CPUs")  # fmt: skip
    print("# intervals in ms (RTP send interval as captured on lo), pkt/s per stream;"
          " p99ok = streams whose own p99 <= 25 ms; digits heard/sent;"
          " exact = calls that heard the keys once each")  # fmt: skip
    print(HEADER, flush=True)
    results: list[RunResult] = []
    root_tmp = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    try:
        for n in ns:
            for impl in impls:
                r = run_one(impl, n, args, root_tmp)
                results.append(r)
                print(row(r), flush=True)
                time.sleep(1.0)
    finally:
        if not args.keep:
            shutil.rmtree(root_tmp, ignore_errors=True)

    def held(impl: str) -> int:
        return max((r.n for r in results if r.impl == impl and r.held), default=0)

    bot = held("voicebot")
    line = f"calls held at p99 <= {TARGET_P99_MS:g} ms: voicebot {bot}"
    if not args.skip_stock:
        stock = held("stock")
        ratio = f"{bot / stock:.1f}x" if stock else ("inf (stock held none)" if bot else "-")
        line += f", stock pyVoIP {stock}, ratio {ratio}"
    print(line)
    target = max(ns)
    for r in results:
        if r.impl == "voicebot" and r.n == target:
            checks = {
                f"{target} calls up": r.streams >= target,
                f"p99 <= {TARGET_P99_MS:g} ms": r.p99 <= TARGET_P99_MS,
                "every digit heard once": r.exact == r.calls_logged == target,
                f"RSS <= {TARGET_RSS_MB:g} MB": r.rss_mb <= TARGET_RSS_MB,
            }
            verdict = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items())
            print(f"target at N={target}: {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
