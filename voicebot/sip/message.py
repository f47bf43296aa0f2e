"""SIP message model and tolerant parser (RFC 3261 §7, §20, §25).

Each wire object is a small dataclass with `parse` and `__str__`/`__bytes__`
side by side. The parser is lenient where real PBXes are sloppy (header-name
case, compact forms, empty values, folded lines, bare LF line ends) and strict
only where guessing would be wrong (no start line, no CSeq): those raise
`SipParseError` and the transport answers 400 or drops the datagram.

Stock pyVoIP 1.6.8 dropped an INVITE whole when any header was empty
(``Supported:``); here an empty value is just an empty string.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from voicebot.sip.pyvoip_adapter import reason_phrase

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"

# Numbers on the wire are ASCII digits, bounded. `str.isdigit()` also accepts
# "²" and "٣", which `int()` then refuses with a ValueError, and a 5 000-digit
# CSeq makes `int()` raise too (Python's 4 300-digit limit): both escaped the
# parser as non-SipParseErrors and the sender never got its 400.
_ASCII_DIGITS = re.compile(r"[0-9]{1,10}")
CSEQ_MAX = 2**31 - 1  # RFC 3261 §8.1.1.5: "MUST be less than 2**31"
MAX_MESSAGE = 65535  # one UDP datagram

# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "CSeq",
        "Max-Forwards",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Authorization",
        "Proxy-Authorization",
        "Record-Route",
        "Route",
        "Expires",
        "Min-Expires",
        "User-Agent",
        "Server",
        "Allow",
        "Accept",
        "Warning",
        "Require",
        "Unsupported",
        "Retry-After",
    )
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1).
LIST_HEADERS = frozenset(
    {"via", "route", "record-route", "contact", "allow", "supported", "require", "accept"}
)


class SipParseError(ValueError):
    """The bytes are not a SIP message we can act on."""


def ascii_int(text: str, what: str, *, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
    """`text` as a bounded non-negative integer of ASCII digits, else `SipParseError`."""
    value = text.strip()
    if not _ASCII_DIGITS.fullmatch(value):
        raise SipParseError(f"bad {what}: {value[:20]!r}")
    number = int(value)
    if not minimum <= number <= maximum:
        raise SipParseError(f"{what} out of range {minimum}-{maximum}: {number}")
    return number


def canonical_name(name: str) -> str:
    """Canonical spelling of a header name ("v" -> "Via", "call-id" -> "Call-ID")."""
    key = name.strip()
    lowered = key.lower()
    if lowered in COMPACT_FORMS:
        return COMPACT_FORMS[lowered]
    return _CANONICAL.get(lowered, key)


def split_list(value: str) -> list[str]:
    """Split a header value at commas outside quotes and <...> (RFC 3261 §7.3.1)."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    angle = 0
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle += 1
        elif ch == ">" and not quoted and angle:
            angle -= 1
        elif ch == "," and not quoted and not angle:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    tail = "".join(current).strip()
    if tail or items:
        items.append(tail)
    return [item for item in items if item]


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=1;b;c="x;y"` -> {"a": "1", "b": None, "c": '"x;y"'} (names lower-cased)."""
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        params[name.strip().lower()] = value.strip() if sep else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(10)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


@dataclass(slots=True)
class SipUri:
    """sip:/sips: URI (RFC 3261 §19.1): user, host, port, ;params, ?headers."""

    host: str
    user: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "sip"
    password: str | None = None
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("sip", "sips", "tel"):
            raise SipParseError(f"not a SIP URI: {text!r}")
        if scheme == "tel":
            number, _, params = rest.partition(";")
            return cls(host="", user=number, scheme="tel", params=parse_params(params))
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart, userinfo = rest, ""
        user: str | None = None
        password: str | None = None
        if at:
            user, _, pw = userinfo.partition(":")
            password = pw or None
        hostport, _, params = hostpart.partition(";")
        host, port = _split_hostport(hostport)
        if not host:
            raise SipParseError(f"SIP URI without host: {text!r}")
        return cls(
            host=host,
            user=user,
            port=port,
            params=parse_params(params),
            scheme=scheme,
            password=password,
            headers=headers,
        )

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{host}{port}{format_params(self.params)}{headers}"


#: RFC 3261 §25.1 host: hostname (alphanum, "-", "."; "_" as PBXs use it) or
#: IPv4address, or IPv6 inside brackets. Anything else in a host we would later
#: send to (a NUL byte from a Contact made asyncio close the SIP socket) is refused.
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):  # IPv6 reference
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not _IPV6.fullmatch(host):
            raise SipParseError(f"bad IPv6 reference: {text[:60]!r}")
    else:
        host, _, port_text = text.partition(":")
        if host and not _HOSTNAME.fullmatch(host):
            raise SipParseError(f"bad host: {host[:60]!r}")
    port: int | None = None
    if port_text:
        port = ascii_int(port_text, "port", minimum=1, maximum=65535)
    return host, port


@dataclass(slots=True)
class NameAddr:
    """name-addr / addr-spec with header params (From, To, Contact; RFC 3261 §20.10)."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if text == "*":
            return cls(uri=SipUri(host="*"), wildcard=True)
        if "<" in text:
            before, _, rest = text.partition("<")
            uri_text, close, after = rest.partition(">")
            if not close:
                raise SipParseError(f"unterminated <...> in {text!r}")
            display = before.strip()
            if display.startswith('"') and display.endswith('"') and len(display) >= 2:
                display = display[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            return cls(
                uri=SipUri.parse(uri_text),
                display=display or None,
                params=parse_params(after),
            )
        # addr-spec: URI params cannot be told from header params, so they are
        # header params (RFC 3261 §20.10).
        uri_text, _, params = text.partition(";")
        return cls(uri=SipUri.parse(uri_text), params=parse_params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display, {**self.params, "tag": tag})

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        display = ""
        if self.display:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"


@dataclass(slots=True)
class Via:
    """One Via entry (RFC 3261 §20.42, RFC 3581 rport)."""

    host: str
    port: int | None = None
    transport: str = "UDP"
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        protocol, _, rest = text.strip().partition(" ")
        parts = [p.strip() for p in protocol.split("/")]
        if len(parts) != 3 or parts[0].upper() != "SIP":
            raise SipParseError(f"bad Via protocol: {text!r}")
        sent_by, _, params = rest.strip().partition(";")
        host, port = _split_hostport(sent_by)
        if not host:
            raise SipParseError(f"Via without host: {text!r}")
        return cls(host=host, port=port, transport=parts[2].upper(), params=parse_params(params))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        if not value or not _ASCII_DIGITS.fullmatch(value):
            return None
        port = int(value)
        return port if 0 < port < 65536 else None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"


class Headers:
    """Ordered header fields, looked up case-insensitively by canonical name."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str]] = []
        for name, value in fields or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._fields.append((canonical_name(name), value))

    def get(self, name: str) -> str | None:
        key = canonical_name(name).lower()
        for field_name, value in self._fields:
            if field_name.lower() == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`; list headers (Via, Contact...) split at commas."""
        key = canonical_name(name).lower()
        values = [v for n, v in self._fields if n.lower() == key]
        if key in LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def set(self, name: str, value: str) -> None:
        """Replace every `name` field with one, keeping the first one's position."""
        canonical = canonical_name(name)
        key = canonical.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for field_name, old in self._fields:
            if field_name.lower() == key:
                if not placed:
                    out.append((canonical, value))
                    placed = True
            else:
                out.append((field_name, old))
        if not placed:
            out.append((canonical, value))
        self._fields = out

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [(n, v) for n, v in self._fields if n.lower() != key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def copy(self) -> Headers:
        clone = Headers()
        clone._fields = list(self._fields)
        return clone


@dataclass(slots=True)
class SipMessage:
    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq") or ""
        number, _, method = value.strip().partition(" ")
        if not method.strip():
            raise SipParseError(f"bad CSeq: {value[:40]!r}")
        return ascii_int(number, "CSeq number", maximum=CSEQ_MAX), method.strip().upper()

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("To") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        vias = self.headers.get_all("Via")
        if not vias:
            raise SipParseError("no Via")
        return Via.parse(vias[0])

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type") or ""
        return value.partition(";")[0].strip().lower()

    def _head_and_body(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(slots=True)
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

    def __bytes__(self) -> bytes:
        return self._head_and_body(f"{self.method} {self.uri} {SIP_VERSION}")

    @property
    def branch(self) -> str:
        return self.top_via.branch or ""


@dataclass(slots=True)
class SipResponse(SipMessage):
    status: int = 0
    reason: str = ""

    def __bytes__(self) -> bytes:
        return self._head_and_body(f"{SIP_VERSION} {self.status} {self.reason}")


_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one UDP datagram into a request or response; raise `SipParseError`.

    The body is cut to Content-Length (RFC 3261 §18.3); a datagram shorter than
    Content-Length is an error. Without Content-Length, the rest is the body.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():  # keepalive CRLFs before a message
        lines.pop(0)
    if not lines:
        raise SipParseError("empty message")
    start, header_lines = lines[0].strip(), lines[1:]
    headers = Headers()
    unfolded: list[str] = []
    for line in header_lines:
        if line[:1] in (" ", "\t") and unfolded:  # folded continuation (§7.3.1)
            unfolded[-1] += " " + line.strip()
        elif line.strip():
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or not _TOKEN.match(name.strip()):
            raise SipParseError(f"bad header line: {line!r}")
        headers.add(name.strip(), value.strip())

    length_text = headers.get("Content-Length")
    if length_text is not None and length_text != "":
        length = ascii_int(length_text, "Content-Length", maximum=MAX_MESSAGE)
        if length > len(body):
            raise SipParseError(f"Content-Length {length} but {len(body)} body bytes")
        body = body[:length]

    message: SipRequest | SipResponse
    parts = start.split(" ", 2)
    if start.startswith("SIP/"):
        if len(parts) < 2 or parts[0].upper() != SIP_VERSION:
            raise SipParseError(f"bad status line: {start[:60]!r}")
        status = ascii_int(parts[1], "status code", minimum=100, maximum=699)
        message = SipResponse(
            headers, body, status=status, reason=parts[2] if len(parts) > 2 else ""
        )
    else:
        if len(parts) != 3 or parts[2].upper() != SIP_VERSION or not _TOKEN.match(parts[0]):
            raise SipParseError(f"bad request line: {start!r}")
        message = SipRequest(headers, body, method=parts[0].upper(), uri=parts[1])
    for required in ("Via", "Call-ID", "From", "To", "CSeq"):
        if not headers.get(required):
            raise SipParseError(f"missing {required}")
    message.cseq  # noqa: B018  (validates)
    message.top_via  # noqa: B018
    return message


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to `request` per RFC 3261 §8.2.6.

    Via (all, in order), From, Call-ID and CSeq are copied; To is copied and
    gets `to_tag` unless it already has a tag or this is a 100 (§8.2.6.2).
    """
    out = Headers()
    for via in request.headers.get_all("Via"):
        out.add("Via", via)
    out.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag and status != 100:
        parsed = NameAddr.parse(to)
        if parsed.tag is None:
            to = str(parsed.with_tag(to_tag))
    out.add("To", to)
    out.add("Call-ID", request.call_id)
    out.add("CSeq", request.headers.get("CSeq") or "")
    if status == 100 and request.headers.get("Timestamp"):
        out.add("Timestamp", request.headers.get("Timestamp") or "")
    for name, value in headers or []:
        out.add(name, value)
    if content_type:
        out.add("Content-Type", content_type)
    return SipResponse(
        out, body, status=status, reason=reason if reason is not None else reason_phrase(status)
    )
