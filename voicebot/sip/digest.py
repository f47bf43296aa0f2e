"""HTTP digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 §22).

Stock pyVoIP 1.6.8 answered 401 only, with MD5 and no qop; PBXes that send
`qop="auth"` (Asterisk PJSIP, FreeSWITCH, Kamailio) or 407 rejected it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256, "SHA-512-256": None}
# When a server offers several challenges, the strongest we can compute wins.
_PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")


class DigestError(ValueError):
    """A challenge we cannot answer (unknown scheme, algorithm or qop)."""


@dataclass(slots=True)
class DigestChallenge:
    """One `Digest ...` challenge from WWW-Authenticate / Proxy-Authenticate."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, header: str) -> DigestChallenge:
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != "digest":
            raise DigestError(f"not a Digest challenge: {header!r}")
        params = parse_auth_params(rest)
        if "nonce" not in params:
            raise DigestError("challenge without nonce")
        qop = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
        return cls(
            realm=params.get("realm", ""),
            nonce=params["nonce"],
            algorithm=params.get("algorithm", "MD5").upper(),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )

    @property
    def supported(self) -> bool:
        base = self.algorithm.removesuffix("-SESS")
        qop_ok = not self.qop or "auth" in self.qop
        return _HASHES.get(base) is not None and qop_ok


def parse_auth_params(text: str) -> dict[str, str]:
    """`a="x, y", b=z` -> {"a": "x, y", "b": "z"}; names lower-cased, quotes removed."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        start = i
        while i < n and text[i] not in "=, \t":
            i += 1
        name = text[start:i].strip().lower()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            if name:
                params[name] = ""
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] != ",":
                i += 1
            value = text[start:i].strip()
        if name:
            params[name] = value
    return params


def choose_challenge(headers: list[str]) -> DigestChallenge:
    """The strongest challenge we support among several (RFC 7616 §3.7: prefer SHA-256)."""
    challenges: list[DigestChallenge] = []
    for header in headers:
        try:
            challenges.append(DigestChallenge.parse(header))
        except DigestError:
            continue
    usable = [c for c in challenges if c.supported]
    if not usable:
        raise DigestError(f"no usable Digest challenge in {headers!r}")
    usable.sort(key=lambda c: _PREFERENCE.index(c.algorithm) if c.algorithm in _PREFERENCE else 99)
    return usable[0]


def _h(algorithm: str, data: str) -> str:
    factory = _HASHES[algorithm.upper().removesuffix("-SESS")]
    assert factory is not None
    return factory(data.encode("utf-8")).hexdigest()


def digest_response(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The `response=` hex digest (RFC 7616 §3.4.1)."""
    algorithm = challenge.algorithm
    ha1 = _h(algorithm, f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if "auth" in challenge.qop:
        return _h(algorithm, f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return _h(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")


class DigestCredentials:
    """Username/password plus the per-nonce counters that qop=auth needs."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._nc: dict[str, int] = {}

    def authorization(
        self, challenge: DigestChallenge, method: str, uri: str, *, cnonce: str | None = None
    ) -> str:
        """The Authorization / Proxy-Authorization value answering `challenge`."""
        if not challenge.supported:
            raise DigestError(
                f"unsupported digest algorithm {challenge.algorithm} / qop {challenge.qop}"
            )
        use_qop = "auth" in challenge.qop
        needs_cnonce = use_qop or challenge.algorithm.endswith("-SESS")
        if needs_cnonce and cnonce is None:
            cnonce = secrets.token_hex(8)
        nc = self._nc.get(challenge.nonce, 0) + 1
        self._nc = {challenge.nonce: nc}  # a new nonce restarts the count
        response = digest_response(
            challenge,
            username=self.username,
            password=self.password,
            method=method,
            uri=uri,
            cnonce=cnonce,
            nc=nc,
        )
        parts = [
            f'username="{self.username}"',
            f'realm="{challenge.realm}"',
            f'nonce="{challenge.nonce}"',
            f'uri="{uri}"',
            f'response="{response}"',
            f"algorithm={challenge.algorithm}",
        ]
        if challenge.opaque is not None:
            parts.append(f'opaque="{challenge.opaque}"')
        if use_qop:
            parts += ["qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
        elif needs_cnonce:
            parts.append(f'cnonce="{cnonce}"')
        return "Digest " + ", ".join(parts)
