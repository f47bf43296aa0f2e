"""Full-duplex call generator for bench/full_duplex.py: N phones in one process, no threads.

    python bench/loadgen.py --target 127.0.0.1:5060 --n 500 --audio speech.ulaw \\
        --mode inband --out result.json [--rate 100] [--window 10]

Why not SIPp: SIPp's `play_pcap_audio` runs one thread per call replaying a
pcap with relative sleeps; at 500 calls x 50 packets/s those threads compete
with the bot for the same 2 cores and are themselves late, so the figure
measured the generator as much as the bot. This is one process: a
`selectors` loop with absolute 20 ms deadlines, the calls' send instants
spread evenly over the 20 ms (1 ms slots, as independent phones are), and
every call's RTP on one UDP socket (the bot tells streams apart by its own
per-call port; the generator by the bot's source port).

Per call it does what a desk phone does: INVITE (PCMU + telephone-event) /
ACK, a 200 to the bot's BYE, a BYE of its own at the end; RTP PCMU at 50
packets/s for the whole call, the audio a loop of speech (`--audio`, raw
mu-law made by the harness with espeak-ng), and the keys `--keys` then
`--confirm` either as RFC 4733 events (`--mode rfc4733`: event packets take
the audio's place while the key is down, end packet three times) or as DTMF
tones (`--mode inband`). In-band tones take the speech's place too, as a
telephone's do: its DTMF dialer mutes the microphone while a key is down
(the dialer chip's mute output drives the speech network), and a manager
keying a menu is not talking anyway. `--tones-over-speech` adds them to
the speech instead: the detector's worst case (a softphone that mixes its
tone generator with the microphone, its user talking). With `--churn` each call
confirms a second after its last key, and a call the bot hangs up is
replaced at once by a new one (new Call-ID and pbx id `bench-<i>-r<n>`)
that keys straight away, until 4 s before the window's end: calls come and
go all window, as on a busy PBX, instead of all starting together.

What it measures, on what the bot SENDS: kernel receive timestamps
(SO_TIMESTAMPNS, taken when the packet enters the loopback device, so the
generator's own lateness in reading does not count) per stream inside the
window; per-stream and pooled inter-arrival p50/p99/max, packets/s per
stream. Its own health: CPU seconds (getrusage) over the window, how late
its send slots were (p99/max), socket drops. It records, per call, when the
first packet of the confirming key left (epoch), for key -> webhook latency.
Writes one JSON document to `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PTIME = 0.020
SLOTS = 20  # send slots per 20 ms
SAMPLES = 160
DTMF_PT = 101
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
#: --churn replaces calls until this long before the window's end (a call's keys take ~3 s).
CHURN_TAIL_S = 4.0
EVENTS = "0123456789*#ABCD"
ROWS = {"1": 697, "2": 697, "3": 697, "A": 697, "4": 770, "5": 770, "6": 770, "B": 770,
        "7": 852, "8": 852, "9": 852, "C": 852, "*": 941, "0": 941, "#": 941, "D": 941}  # fmt: skip
COLS = {"1": 1209, "4": 1209, "7": 1209, "*": 1209, "2": 1336, "5": 1336, "8": 1336,
        "0": 1336, "3": 1477, "6": 1477, "9": 1477, "#": 1477, "A": 1633, "B": 1633,
        "C": 1633, "D": 1633}  # fmt: skip


# --------------------------------------------------------------------------- G.711


def _ulaw_encode_table() -> np.ndarray:
    # voicebot's own table (the Sun g711.c reference), indexed by the unsigned 16-bit view
    from voicebot.media.g711 import PCMU

    table = np.asarray(PCMU._encode, dtype=np.uint8)
    return table[np.arange(-32768, 32768, dtype=np.int32) & 0xFFFF]


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


ULAW_ENC = _ulaw_encode_table()
ULAW_DEC = _ulaw_decode_table()


def ulaw_encode(pcm: np.ndarray) -> bytes:
    return ULAW_ENC[np.clip(pcm, -32768, 32767).astype(np.int32) + 32768].tobytes()


def dtmf_tone(key: str, frames: int, dbm0_per_tone: float) -> np.ndarray:
    """`frames` x 20 ms of the key's two tones (0 dBm0 = 3.17 dBov in mu-law, G.711)."""
    amp = 32768 * 10 ** ((dbm0_per_tone - 3.17) / 20) * math.sqrt(2)
    t = np.arange(frames * SAMPLES) / 8000
    return amp * (np.sin(2 * np.pi * ROWS[key] * t) + np.sin(2 * np.pi * COLS[key] * t))


# --------------------------------------------------------------------------- calls


@dataclass(slots=True)
class Call:
    index: int
    call_id: str
    from_tag: str
    branch: str
    pbx_id: str
    ssrc: int
    seq: int
    ts: int
    audio_pos: int
    keys: list[tuple[float, str]]  # (monotonic start, key), in order
    to_tag: str = ""
    remote: tuple[str, int] | None = None
    state: str = "new"  # new, inviting, up, bye_sent, ended, failed
    invite_sent: float = 0.0
    invite_tries: int = 0
    bye_sent: float = 0.0
    bye_tries: int = 0
    answered_at: float = 0.0
    ended_by: str = ""
    out: list[bytes] = field(default_factory=list)  # packets queued for coming ticks
    confirm_sent_epoch: float = 0.0
    # in-band: the confirming key's packet that completes 40 ms of tone (Q.24's minimum,
    # the earliest a detector may report it); RFC 4733: its first packet, as above
    confirm_heard_epoch: float = 0.0
    confirm_packets: int = 0  # of the confirming press, sent so far
    last_code: int = 0  # the last response to the INVITE, 0 = none heard
    keys_sent: str = ""
    # in-band: speech packets still owed before the next press. A late generator
    # skips send slots; without this the speech between two presses could shrink
    # to nothing, and two presses of one key (the 00 of 1500) arrive as one.
    gap_owed: int = 0


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        host, _, port = args.target.rpartition(":")
        self.target = (host, int(port))
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind((args.ip, args.sip_port))
        with contextlib.suppress(OSError):
            self.sip.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
        self.sip.setblocking(False)
        self.sip_port = self.sip.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # SO_RCVBUFFORCE (33) / SO_SNDBUFFORCE (32) pass rmem_max when root; else best effort
        for force, plain, size in (
            (33, socket.SO_RCVBUF, 16 << 20),
            (32, socket.SO_SNDBUF, 4 << 20),
        ):
            try:
                self.rtp.setsockopt(socket.SOL_SOCKET, force, size)
            except OSError:
                with contextlib.suppress(OSError):
                    self.rtp.setsockopt(socket.SOL_SOCKET, plain, size)
        self.rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.rtp.bind((args.ip, 0))
        self.rtp.setblocking(False)
        self.rtp_port = self.rtp.getsockname()[1]
        raw = Path(args.audio).read_bytes()
        self.audio = raw[: len(raw) // SAMPLES * SAMPLES]
        self.audio_pcm = ULAW_DEC[np.frombuffer(self.audio, dtype=np.uint8)].astype(np.float64)
        self.tones = {k: dtmf_tone(k, args.press_ms // 20, args.tone_dbm0) for k in set(
            args.keys + args.confirm)}  # fmt: skip
        self.coded_tones = {k: ulaw_encode(tone) for k, tone in self.tones.items()}
        self.calls: list[Call] = []  # the call in each of the N places now
        self.every_call: list[Call] = []  # with --churn, the replaced ones too
        self.first: list[Call] = []  # the N calls placed first
        self.closed: list[tuple[Call, list[float]]] = []  # streams of replaced calls
        self.rnd = random.Random(7)
        self.churn_until = 0.0  # monotonic; with --churn, replace ended calls before it
        self.generation = 0  # replacements made
        self.by_callid: dict[str, Call] = {}
        self.by_src: dict[int, Call] = {}
        self.recv_ts: dict[int, list[float]] = {}
        self.received = 0
        self.late: list[float] = []
        self.press_epochs: list[float] = []  # when each press's first packet left

    # -- SIP -------------------------------------------------------------------------

    def _sdp(self, call: Call) -> str:
        ip = self.args.ip
        return (
            f"v=0\r\no=- {call.index + 1000} 1 IN IP4 {ip}\r\ns=bench\r\nc=IN IP4 {ip}\r\n"
            f"t=0 0\r\nm=audio {self.rtp_port} RTP/AVP 0 {DTMF_PT}\r\n"
            f"a=rtpmap:0 PCMU/8000\r\na=rtpmap:{DTMF_PT} telephone-event/8000\r\n"
            f"a=fmtp:{DTMF_PT} 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        )

    def _request(self, call: Call, method: str, cseq: int, branch: str, body: str = "") -> bytes:
        ip, tip, tport = self.args.ip, *self.target
        to = f"<sip:bot@{tip}:{tport}>" + (f";tag={call.to_tag}" if call.to_tag else "")
        lines = [
            f"{method} sip:bot@{tip}:{tport} SIP/2.0",
            f"Via: SIP/2.0/UDP {ip}:{self.sip_port};branch={branch};rport",
            "Max-Forwards: 70",
            f'From: "Manager" <sip:bench@{ip}:{self.sip_port}>;tag={call.from_tag}',
            f"To: {to}",
            f"Call-ID: {call.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:bench@{ip}:{self.sip_port}>",
            "User-Agent: voicebot-bench-loadgen",
        ]
        if method == "INVITE":
            lines += [f"X-Call-ID: {call.pbx_id}", "X-Client-Number: 79990000001",
                      "X-Manager: bench", "Content-Type: application/sdp"]  # fmt: skip
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def send_invite(self, call: Call, now: float) -> None:
        call.invite_sent = now
        call.invite_tries += 1
        if call.state == "new":
            call.state = "inviting"
        self.sip.sendto(self._request(call, "INVITE", 1, call.branch, self._sdp(call)), self.target)

    def send_ack(self, call: Call) -> None:
        self.sip.sendto(self._request(call, "ACK", 1, call.branch + "a"), self.target)

    def send_bye(self, call: Call, now: float) -> None:
        call.state = "bye_sent"
        call.bye_sent = now
        call.bye_tries += 1
        self.sip.sendto(self._request(call, "BYE", 2, call.branch + "b"), self.target)

    def on_sip(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        call = self.by_callid.get(headers.get("call-id") or headers.get("i", ""))
        if lines[0].startswith("SIP/2.0 "):
            if call is None:
                return
            code = int(lines[0].split()[1])
            method = headers.get("cseq", "").split()[-1:]
            if method == ["INVITE"]:
                call.last_code = max(call.last_code, code)
            if method == ["INVITE"] and code >= 200:
                to = headers.get("to") or headers.get("t", "")
                if ";tag=" in to:
                    call.to_tag = to.split(";tag=", 1)[1].split(";")[0]
                self.send_ack(call)
                if call.state != "inviting":
                    return  # a retransmitted final response: ACK again
                if code >= 300:
                    call.state = "failed"
                    call.ended_by = f"invite {code}"
                    return
                call.remote = self._sdp_remote(body.decode("utf-8", "replace"))
                call.state = "up"
                call.answered_at = now
            elif method == ["BYE"] and code >= 200 and call.state == "bye_sent":
                call.state = "ended"
            return
        method = lines[0].split(" ", 1)[0]
        if method in ("BYE", "OPTIONS", "INFO", "NOTIFY", "INVITE"):
            keep = [ln for ln in lines[1:] if ln.partition(":")[0].strip().lower()
                    in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")]  # fmt: skip
            resp = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0"]) + "\r\n\r\n"
            self.sip.sendto(resp.encode(), addr)
            if method == "BYE" and call is not None and call.state in ("up", "inviting"):
                call.state = "ended"
                call.ended_by = "bot"
                if now < self.churn_until and self.calls[call.index] is call:
                    self.replace(call, now)
        # ACK and anything else: nothing to do

    @staticmethod
    def _sdp_remote(sdp: str) -> tuple[str, int] | None:
        ip, port = "", 0
        for line in sdp.splitlines():
            if line.startswith("c=IN IP4 "):
                ip = line[9:].strip()
            elif line.startswith("m=audio "):
                port = int(line.split()[1])
        return (ip, port) if ip and port else None

    # -- RTP -------------------------------------------------------------------------

    def _rtp(self, call: Call, pt: int, marker: bool, ts: int, payload: bytes) -> bytes:
        header = struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), call.seq, ts, call.ssrc)
        call.seq = (call.seq + 1) & 0xFFFF
        return header + payload

    def _press_packets(self, call: Call, key: str) -> list[bytes]:
        """The packets of one press, one per coming tick (starting now)."""
        frames = self.args.press_ms // 20
        out: list[bytes] = []
        n = len(self.audio)
        if self.args.mode == "rfc4733":
            event = EVENTS.index(key)
            ts = call.ts
            for i in range(frames):
                payload = struct.pack("!BBH", event, 10, (i + 1) * SAMPLES)
                out.append(self._rtp(call, DTMF_PT, i == 0, ts, payload))
            end = struct.pack("!BBH", event, 0x80 | 10, frames * SAMPLES)
            out += [self._rtp(call, DTMF_PT, False, ts, end) for _ in range(3)]
            # audio resumes after the event with the timestamps the event spanned
            call.ts = (call.ts + len(out) * SAMPLES) & 0xFFFFFFFF
            call.audio_pos = (call.audio_pos + len(out) * SAMPLES) % n
            return out
        if self.args.tones_over_speech:
            idx = (call.audio_pos + np.arange(frames * SAMPLES)) % n
            coded = ulaw_encode(self.audio_pcm[idx] + self.tones[key])
        else:  # dial mute: the tone alone while the key is down
            coded = self.coded_tones[key]
        for i in range(frames):
            out.append(self._rtp(call, 0, False, call.ts, coded[i * SAMPLES : (i + 1) * SAMPLES]))
            call.ts = (call.ts + SAMPLES) & 0xFFFFFFFF
        call.audio_pos = (call.audio_pos + frames * SAMPLES) % n
        return out

    def send_rtp(self, call: Call, now: float) -> None:
        if not call.out and not call.gap_owed and call.keys and now >= call.keys[0][0]:
            _, key = call.keys.pop(0)
            call.out = self._press_packets(call, key)
            call.keys_sent += key
            self.press_epochs.append(time.time())
            if self.args.mode == "inband":
                call.gap_owed = self.args.gap_ms // 20
            if not call.keys:  # the confirming key: its first packet leaves now
                call.confirm_sent_epoch = time.time()
        if call.out:
            packet = call.out.pop(0)
            if call.confirm_sent_epoch and not call.confirm_heard_epoch:
                call.confirm_packets += 1
                if call.confirm_packets * 20 >= (40 if self.args.mode == "inband" else 20):
                    call.confirm_heard_epoch = time.time()
        else:
            call.gap_owed = max(0, call.gap_owed - 1)
            pos = call.audio_pos
            packet = self._rtp(call, 0, False, call.ts, self.audio[pos : pos + SAMPLES])
            call.ts = (call.ts + SAMPLES) & 0xFFFFFFFF
            call.audio_pos = (pos + SAMPLES) % len(self.audio)
        assert call.remote is not None
        with contextlib.suppress(BlockingIOError):
            self.rtp.sendto(packet, call.remote)

    def drain_rtp(self, w0: float, w1: float) -> None:
        recvmsg = self.rtp.recvmsg
        by_src, recv_ts = self.by_src, self.recv_ts
        while True:
            try:
                _, anc, _, addr = recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP errors surface here; not a packet
            self.received += 1
            port = addr[1]
            if port not in by_src:
                continue
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    t = sec + nsec * 1e-9
                    if w0 <= t <= w1:
                        recv_ts[port].append(t)
                    break

    # -- calls -------------------------------------------------------------------------

    def make_call(self, i: int, pbx_id: str, k0: float, confirm_at: float | None) -> Call:
        """Place `i`'s call: keys from `k0` (monotonic), the confirm at `confirm_at`
        (or a second after the last key)."""
        a, rnd = self.args, self.rnd
        step = (a.press_ms + a.gap_ms) / 1000
        keys = [(k0 + j * step, k) for j, k in enumerate(a.keys)]
        last = keys[-1][0] + 1.0 if keys else k0
        keys.append((max(last, confirm_at or last), a.confirm))
        call = Call(i, f"{pbx_id}-{os.getpid()}-{rnd.getrandbits(32):08x}@bench",
                    f"f{i}x{rnd.getrandbits(24):06x}", f"z9hG4bK-{i}-{rnd.getrandbits(32):x}",
                    pbx_id, rnd.getrandbits(32), rnd.getrandbits(16),
                    rnd.getrandbits(32), rnd.randrange(len(self.audio) // SAMPLES) * SAMPLES,
                    keys if a.keys or a.confirm else [])  # fmt: skip
        self.every_call.append(call)
        self.by_callid[call.call_id] = call
        return call

    def replace(self, old: Call, now: float) -> None:
        """--churn: the bot hung up `old`; a new call takes its place and keys at once."""
        self.generation += 1
        if old.remote is not None and self.by_src.get(old.remote[1]) is old:
            # the bot may give the new call the same port: the old stream ends here
            del self.by_src[old.remote[1]]
            self.closed.append((old, self.recv_ts.pop(old.remote[1])))
        new = self.make_call(old.index, f"bench-{old.index}-r{self.generation}", now + 0.3, None)
        self.calls[old.index] = new
        self.send_invite(new, now)

    # -- the run ---------------------------------------------------------------------

    def run(self) -> dict[str, object]:
        a = self.args
        t_start_mono, t_start_epoch = time.monotonic(), time.time()
        ramp = a.n / a.rate
        w0_mono = t_start_mono + ramp + a.settle
        w1_mono = w0_mono + a.window
        w0 = t_start_epoch + (w0_mono - t_start_mono)
        w1 = w0 + a.window
        if a.churn:
            self.churn_until = w1_mono - CHURN_TAIL_S
        for i in range(a.n):
            spread = (i * 0.6180339887) % 1.0
            k0 = w0_mono + 0.3 + spread * a.key_spread
            # confirms spread evenly over the second half of the window (barge-in on the
            # read-back): N / (window / 2 - 1.5) saves per second; with --churn, a
            # second after the last key, so calls end (and are replaced) all along
            spread2 = (i * 0.7548776662) % 1.0
            half = a.window / 2
            confirm_at = None if a.churn else w0_mono + half + spread2 * (half - 1.5)
            self.calls.append(self.make_call(i, f"bench-{i}", k0, confirm_at))
        self.first = list(self.calls)
        sel = selectors.DefaultSelector()
        sel.register(self.sip, selectors.EVENT_READ, "sip")
        sel.register(self.rtp, selectors.EVENT_READ, "rtp")
        slot_len = PTIME / SLOTS
        next_slot = t_start_mono
        slot_no = 0
        invited = 0
        end_mono = w1_mono + a.tail
        bye_deadline = None
        cpu_w0 = cpu_w1 = None
        while True:
            now = time.monotonic()
            if cpu_w0 is None and now >= w0_mono:
                cpu_w0 = resource.getrusage(resource.RUSAGE_SELF)
                self.received_w0 = self.received
            if cpu_w1 is None and now >= w1_mono:
                cpu_w1 = resource.getrusage(resource.RUSAGE_SELF)
                self.received_w1 = self.received
            # place INVITEs at --rate
            while invited < a.n and now >= t_start_mono + invited / a.rate:
                self.send_invite(self.calls[invited], now)
                invited += 1
            if now >= next_slot:
                if w0_mono <= now <= w1_mono:
                    self.late.append(now - next_slot)
                s = slot_no % SLOTS
                for call in self.calls[s::SLOTS]:
                    if call.state == "up":
                        if call.remote is not None and call.remote[1] not in self.by_src:
                            self.by_src[call.remote[1]] = call
                            self.recv_ts[call.remote[1]] = []
                        self.send_rtp(call, now)
                    elif (
                        call.state == "inviting"
                        and now - call.invite_sent > min(4.0, 0.5 * 2 ** (call.invite_tries - 1))
                        and call.invite_tries < 7
                    ):
                        self.send_invite(call, now)  # fmt: skip
                    elif call.state == "bye_sent" and now - call.bye_sent > 1.0:
                        if call.bye_tries < 4:
                            self.send_bye(call, now)
                        else:
                            call.state, call.ended_by = "ended", "bye unanswered"
                slot_no += 1
                next_slot += slot_len
                if next_slot < now - 0.1:  # hopelessly behind: do not burst to catch up
                    skipped = int((now - next_slot) / slot_len)
                    next_slot += skipped * slot_len
                    slot_no += skipped
                continue
            if now >= end_mono and bye_deadline is None:
                for call in self.calls:
                    if call.state == "up":
                        self.send_bye(call, now)
                        call.ended_by = "generator"
                bye_deadline = now + 6.0
            if bye_deadline is not None and (
                now >= bye_deadline
                or all(c.state in ("ended", "failed", "new", "inviting") for c in self.calls)
            ):
                break
            for key, _ in sel.select(max(0.0, next_slot - time.monotonic())):
                if key.data == "rtp":
                    self.drain_rtp(w0, w1)
                else:
                    while True:
                        try:
                            data, addr = self.sip.recvfrom(65535)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            continue
                        self.on_sip(data, addr, time.monotonic())
        return self.summary(w0, w1, cpu_w0, cpu_w1)

    def streams(self) -> list[tuple[Call, np.ndarray]]:
        """Every stream heard in the window (with --churn, replaced calls' too):
        the call and its kernel receive timestamps, in order."""
        live = [(self.by_src[port], ts) for port, ts in self.recv_ts.items()]
        return [(call, np.sort(np.asarray(ts))) for call, ts in live + self.closed]

    def summary(self, w0: float, w1: float, c0: object, c1: object) -> dict[str, object]:
        a = self.args
        pooled: list[np.ndarray] = []
        streams = []
        for call, ts in self.streams():
            if len(ts) < 2:
                continue
            arr = np.diff(ts) * 1000
            pooled.append(arr)
            span = ts[-1] - ts[0]
            streams.append({
                "call": call.index,
                "p99": float(np.percentile(arr, 99)),
                "max": float(arr.max()),
                "pps": (len(ts) - 1) / span if span > 0 else float("nan"),
                "full": ts[0] - w0 < 0.1 and w1 - ts[-1] < 0.1,
            })  # fmt: skip
        allg = np.concatenate(pooled) if pooled else np.array([])
        cpu = float("nan")
        if c0 is not None and c1 is not None:
            used = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)  # type: ignore[attr-defined]
            cpu = 100 * used / a.window
        late = np.asarray(self.late) * 1000 if self.late else np.array([0.0])

        def pct(x: np.ndarray, q: float) -> float:
            return float(np.percentile(x, q)) if len(x) else float("nan")

        return {
            "n": a.n,
            "mode": a.mode,
            "window": [w0, w1],
            "up": sum(c.answered_at > 0 for c in self.first),
            "failed": sum(c.state == "failed" for c in self.every_call),
            "no_answer": {
                "no response": sum(c.last_code == 0 for c in self.first),
                "provisional only": sum(0 < c.last_code < 200 for c in self.first),
            },
            "ended_by_bot": sum(c.ended_by == "bot" for c in self.every_call),
            "calls_made": len(self.every_call),
            "streams": len(streams),
            "p50": pct(allg, 50),
            "p99": pct(allg, 99),
            "max": float(allg.max()) if len(allg) else float("nan"),
            "pps_mean": float(np.mean([s["pps"] for s in streams])) if streams else float("nan"),
            "pps_min": float(min(s["pps"] for s in streams)) if streams else float("nan"),
            "streams_p99_ok": sum(s["p99"] <= 25.0 for s in streams),
            "gen_cpu": cpu,
            "gen_late_p99": pct(late, 99),
            "gen_late_max": float(late.max()),
            "gen_received": self.received,
            "keys_sent": {c.pbx_id: c.keys_sent for c in self.every_call},
            "confirm_sent": {
                c.pbx_id: c.confirm_sent_epoch for c in self.every_call if c.confirm_sent_epoch
            },
            "confirm_heard": {
                c.pbx_id: c.confirm_heard_epoch for c in self.every_call if c.confirm_heard_epoch
            },
            "udp_drops": _udp_drops(self.rtp_port),
            "timeline": self.timeline(w0, w1),
        }

    def timeline(self, w0: float, w1: float, bucket: float = 0.5) -> list[dict[str, float]]:
        """The window in `bucket`-s slices: the send gaps that ended in each (count, p99,
        max, how many over 25 ms), and the presses and confirming keys that started in
        it; so a bad p99 can be laid beside what the calls were doing then."""
        every = [ts for _, ts in self.streams() if len(ts) > 1]
        ends = [ts[1:] for ts in every]
        gaps = [np.diff(ts) * 1000 for ts in every]
        end_all = np.concatenate(ends) if ends else np.array([])
        gap_all = np.concatenate(gaps) if gaps else np.array([])
        presses = np.asarray(self.press_epochs)
        confirms = np.asarray(
            [c.confirm_sent_epoch for c in self.every_call if c.confirm_sent_epoch]
        )
        out = []
        for k in range(math.ceil((w1 - w0) / bucket)):
            lo, hi = w0 + k * bucket, min(w1, w0 + (k + 1) * bucket)
            g = gap_all[(end_all >= lo) & (end_all < hi)]
            out.append({
                "t": k * bucket,
                "gaps": len(g),
                "p99": float(np.percentile(g, 99)) if len(g) else float("nan"),
                "max": float(g.max()) if len(g) else float("nan"),
                "over25": int((g > 25.0).sum()),
                "presses": int(((presses >= lo) & (presses < hi)).sum()),
                "confirms": int(((confirms >= lo) & (confirms < hi)).sum()),
            })  # fmt: skip
        return out


def _udp_drops(port: int) -> int:
    """The kernel's drop count for our RTP socket (last column of /proc/net/udp)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].split(":")[1], 16) == port:
                return int(cols[-1])
    return -1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="the bot's SIP host:port")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--rate", type=float, default=100.0, help="INVITEs per second")
    p.add_argument("--settle", type=float, default=2.0, help="s after the last INVITE")
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--tail", type=float, default=2.0, help="s after the window before BYE")
    p.add_argument("--ip", default="127.0.0.1")
    p.add_argument("--sip-port", type=int, default=0)
    p.add_argument("--audio", required=True, help="raw mu-law 8 kHz speech, looped")
    p.add_argument("--mode", choices=("rfc4733", "inband"), default="rfc4733")
    p.add_argument("--keys", default="3#1500#")
    p.add_argument("--confirm", default="1")
    p.add_argument("--press-ms", type=int, default=100)
    p.add_argument("--gap-ms", type=int, default=200)
    p.add_argument("--key-spread", type=float, default=3.0, help="s over which calls start keying")
    p.add_argument("--tone-dbm0", type=float, default=-10.0, help="in-band level per tone")
    p.add_argument(
        "--tones-over-speech",
        action="store_true",
        help="in-band: add the tones to the speech (a phone with no dial mute, its user"
        " talking: the detector's worst case) instead of sending them in its place",
    )
    p.add_argument(
        "--churn",
        action="store_true",
        help="each call confirms a second after its last key, and a call the bot hangs up"
        " is replaced by a new one that keys at once: calls come and go all window",
    )
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.window < 6:
        p.error("--window must be >= 6 s (the keys, the read-back and the confirm fit in it)")
    gen = Generator(args)
    print(f"loadgen sip={gen.sip_port} rtp={gen.rtp_port}", flush=True)
    result = gen.run()
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
