"""A seeded mutator over a corpus of real SIP messages (issue 6 item 8).

The corpus is what a PBX really sends the bot: INVITE with SDP, ACK, BYE,
CANCEL, OPTIONS, INFO with application/dtmf-relay, responses to a REGISTER
(401 with a challenge, 200), and a branch-less RFC 2543 INVITE. Each message
is a template: `{n}` makes Call-ID, tags and branches unique per datagram (so
a mutant is a new transaction, not a retransmission), `{host}` / `{port}` are
the sending peer's address.

`Mutator(seed).datagram(n)` picks a template and applies one to three
mutations: byte flips, truncation, header duplication, huge numbers, unicode
digits, CRLF games, header deletion, bad SDP (ports above 65535, the DVI4
payload types 5/6/16/17 alone, no c= line, a host name in c=), wrong
Content-Length, NUL bytes, long values. The same seed gives the same
datagrams, so a failure replays.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

SDP = (
    "v=0\r\n"
    "o=pbx 123 456 IN IP4 {host}\r\n"
    "s=call\r\n"
    "c=IN IP4 {host}\r\n"
    "t=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)


def _request(method: str, extra: str = "", body: str = "", branch: bool = True, **kw: str) -> str:
    to_tag = kw.get("to_tag", "")
    via_branch = ";branch=z9hG4bK-{n}" if branch else ""
    head = (
        f"{method} sip:bot@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {{host}}:{{port}}{via_branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Ivanov" <sip:ivanov@{host}>;tag=from-{n}\r\n'
        f"To: <sip:bot@127.0.0.1>{to_tag}\r\n"
        "Call-ID: fuzz-{n}@{host}\r\n"
        f"CSeq: {kw.get('cseq', '1')} {kw.get('cseq_method', method)}\r\n"
        "Contact: <sip:ivanov@{host}:{port}>\r\n"
        "User-Agent: Asterisk PBX 22.1\r\n"
        f"{extra}"
    )
    return head + f"Content-Length: {len(body)}\r\n\r\n" + body


CORPUS: list[str] = [
    _request(
        "INVITE",
        "X-Call-Reason: post-call\r\nX-Call-ID: pbx-{n}\r\nX-Client-Number: +79990001122\r\n"
        "X-Manager: ivanov\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n"
        "Supported: replaces, timer\r\nContent-Type: application/sdp\r\n",
        SDP,
    ),
    _request("ACK", to_tag=";tag=bot-{n}"),
    _request("BYE", to_tag=";tag=bot-{n}", cseq="2"),
    _request("CANCEL", cseq_method="CANCEL"),
    _request("OPTIONS", "Accept: application/sdp\r\n"),
    _request(
        "INFO",
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
        to_tag=";tag=bot-{n}",
        cseq="3",
    ),
    # RFC 2543: no magic-cookie branch, transactions matched on Call-ID/tags/CSeq
    _request("INVITE", "Content-Type: application/sdp\r\n", SDP, branch=False),
    # Responses to a REGISTER we might have sent (the registrar's answers)
    (
        "SIP/2.0 401 Unauthorized\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{n};received=127.0.0.1;rport=5060\r\n"
        "From: <sip:bot@{host}>;tag=reg-{n}\r\n"
        "To: <sip:bot@{host}>;tag=as-{n}\r\n"
        "Call-ID: reg-{n}@127.0.0.1\r\n"
        "CSeq: 1 REGISTER\r\n"
        'WWW-Authenticate: Digest algorithm=MD5, realm="asterisk", nonce="{n}abc"\r\n'
        "Content-Length: 0\r\n\r\n"
    ),
    (
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{n};received=127.0.0.1;rport=5060\r\n"
        "From: <sip:bot@{host}>;tag=reg-{n}\r\n"
        "To: <sip:bot@{host}>;tag=as-{n}\r\n"
        "Call-ID: reg-{n}@127.0.0.1\r\n"
        "CSeq: 2 REGISTER\r\n"
        "Contact: <sip:bot@127.0.0.1:5060>;expires=60\r\n"
        "Content-Length: 0\r\n\r\n"
    ),
]

HUGE_NUMBERS = ["9" * 5000, "4294967296", "18446744073709551616", "-1", "0", "65536", "99999"]
UNICODE_DIGITS = ["²", "٣", "１", "߃", "𝟗", "Ⅷ"]
DVI4 = ["5", "6", "16", "17", "5 6 16 17"]


class Mutator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._mutations: list[Callable[[bytes], bytes]] = [
            self.flip_bytes,
            self.truncate,
            self.duplicate_header,
            self.delete_header,
            self.huge_number,
            self.unicode_digit,
            self.crlf_games,
            self.bad_sdp,
            self.bad_sdp,
            self.content_length,
            self.nul_bytes,
            self.long_value,
            self.fold_header,
        ]

    def datagram(self, n: int, host: str, port: int) -> bytes:
        template = self.rng.choice(CORPUS)
        text = template.replace("{n}", str(n)).replace("{host}", host).replace("{port}", str(port))
        data = text.encode()
        if text.startswith("INVITE"):  # SDP lengths change: keep Content-Length honest first
            data = _fix_length(data)
        if self.rng.random() < 0.05:
            return data  # some untouched: the stateful paths must see sane traffic too
        for _ in range(self.rng.choice((1, 1, 1, 2, 2, 3))):
            data = self.rng.choice(self._mutations)(data)
        return data[:65000]

    # -- mutations ------------------------------------------------------------

    def flip_bytes(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            if out:
                i = self.rng.randrange(len(out))
                out[i] = self.rng.randrange(256)
        return bytes(out)

    def truncate(self, data: bytes) -> bytes:
        return data[: self.rng.randrange(max(1, len(data)))]

    def _lines(self, data: bytes) -> tuple[list[bytes], bytes]:
        head, sep, body = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n"), sep + body

    def duplicate_header(self, data: bytes) -> bytes:
        lines, rest = self._lines(data)
        if len(lines) < 2:
            return data
        i = self.rng.randrange(1, len(lines))
        copy = lines[i]
        if self.rng.random() < 0.5:  # a second value, different from the first
            copy = re.sub(rb"\d{1,9}", lambda m: str(int(m.group()) + 7).encode(), copy, count=1)
        lines.insert(self.rng.randrange(1, len(lines) + 1), copy)
        return b"\r\n".join(lines) + rest

    def delete_header(self, data: bytes) -> bytes:
        lines, rest = self._lines(data)
        if len(lines) < 2:
            return data
        del lines[self.rng.randrange(1, len(lines))]
        return b"\r\n".join(lines) + rest

    def _replace_number(self, data: bytes, new: str) -> bytes:
        spans = [m.span() for m in re.finditer(rb"\d+", data)]
        if not spans:
            return data
        a, b = self.rng.choice(spans)
        return data[:a] + new.encode() + data[b:]

    def huge_number(self, data: bytes) -> bytes:
        return self._replace_number(data, self.rng.choice(HUGE_NUMBERS))

    def unicode_digit(self, data: bytes) -> bytes:
        return self._replace_number(data, self.rng.choice(UNICODE_DIGITS))

    def crlf_games(self, data: bytes) -> bytes:
        choice = self.rng.randrange(7)
        if choice == 0:
            return data.replace(b"\r\n", b"\n")
        if choice == 1:
            return data.replace(b"\r\n", b"\r")
        if choice == 2:
            return b"\r\n\r\n" + data  # leading blank lines (RFC 3261 §7.5 lets them be skipped)
        if choice == 3:
            i = data.find(b"\r\n", self.rng.randrange(max(1, len(data))))
            return data if i < 0 else data[:i] + b"\r\n\r\n" + data[i:]  # body starts early
        if choice == 4:
            return data.rstrip(b"\r\n")
        if choice == 5:
            return data.replace(b"\r\n\r\n", b"\r\n", 1)  # no end of headers
        return data.replace(b"\r\n", b"\r\n\r\n\r\n", 1)

    def bad_sdp(self, data: bytes) -> bytes:
        if b"m=audio" not in data:
            return self.huge_number(data)
        choice = self.rng.randrange(6)
        if choice == 0:
            port = self.rng.choice(["65536", "70000", "99999999", "9" * 5000, "-5", "²"])
            data = re.sub(rb"m=audio \d+", b"m=audio " + port.encode(), data)
        elif choice == 1:
            data = re.sub(rb"(m=audio \d+ RTP/AVP)[^\r\n]*", rb"\1 " + self._dvi4(), data)
            data = re.sub(rb"a=rtpmap:[^\r\n]*\r\n", b"", data)
        elif choice == 2:
            data = re.sub(rb"c=IN IP4 [^\r\n]*\r\n", b"", data)
        elif choice == 3:
            host = self.rng.choice([b"pbx.example.com", b"0.0.0.0", b"224.0.0.1", b"::1", b""])
            data = re.sub(rb"c=IN IP4 [^\r\n]*", b"c=IN IP4 " + host, data)
        elif choice == 4:
            data = re.sub(rb"(m=audio \d+ RTP/AVP)[^\r\n]*", rb"\1 0 0 0 101 101 300 -1", data)
        else:
            data = data.replace(b"m=audio", b"m=audio 0 RTP/AVP 0\r\nm=audio", 1)
        return _fix_length(data) if self.rng.random() < 0.8 else data

    def _dvi4(self) -> bytes:
        return self.rng.choice(DVI4).encode()

    def content_length(self, data: bytes) -> bytes:
        value = self.rng.choice(["0", "1", "100000", "-3", "", "12 34", "0x10"])
        return re.sub(rb"Content-Length: [^\r\n]*", b"Content-Length: " + value.encode(), data)

    def nul_bytes(self, data: bytes) -> bytes:
        i = self.rng.randrange(max(1, len(data)))
        return data[:i] + b"\x00" * self.rng.randint(1, 4) + data[i:]

    def long_value(self, data: bytes) -> bytes:
        lines, rest = self._lines(data)
        if len(lines) < 2:
            return data
        i = self.rng.randrange(1, len(lines))
        lines[i] += b";x=" + b"A" * self.rng.choice((300, 3000, 20000))
        return b"\r\n".join(lines) + rest

    def fold_header(self, data: bytes) -> bytes:
        """Obsolete line folding (RFC 3261 §7.3.1): a header continued on the next line."""
        lines, rest = self._lines(data)
        if len(lines) < 2:
            return data
        i = self.rng.randrange(1, len(lines))
        name, colon, value = lines[i].partition(b":")
        if colon:
            lines[i] = name + b":\r\n " + value.strip()
        return b"\r\n".join(lines) + rest


def _fix_length(data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return data
    head = re.sub(rb"Content-Length: [^\r\n]*", f"Content-Length: {len(body)}".encode(), head)
    return head + sep + body
