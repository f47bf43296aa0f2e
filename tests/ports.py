"""Free loopback ports for tests: the one place a test gets a port from.

Every port starts as one the kernel hands out for ``bind(port 0)``, so it is
free *now* and lies in the ephemeral range, away from the fixed ports daemons
use. A span (SIPp's media ports, an RTP window for a bot or a softphone) is a
run of consecutive ports that are all bound once to prove they are free, then
released. The release is a race with every other process on the machine, so
RTP windows are sized with slack: the bot's and the softphone's `RtpPortPool`
skip a port someone took meanwhile, and a window with room to skip never
runs dry (`RtpPortsExhausted`) because one port was stolen.

Random bases ("pick something in 30000-39000") are what this replaces: they
collide with whatever else holds ports in that range, which is how two of three
softphone tests once failed while another process held UDP ports.
"""

from __future__ import annotations

import contextlib
import socket

__all__ = ["LOOPBACK", "free_port", "free_udp_span", "rtp_window", "udp_bound"]

LOOPBACK = "127.0.0.1"
_TRIES = 200
_KINDS = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}


def _os_port(kind: int, host: str) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _all_free(ports: range, kinds: tuple[int, ...], host: str) -> bool:
    """Bind every port of ``ports`` for every kind at once; True when none refused."""
    with contextlib.ExitStack() as held:
        for port in ports:
            for kind in kinds:
                sock = held.enter_context(socket.socket(socket.AF_INET, kind))
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def free_port(*, udp: bool = True, tcp: bool = True, host: str = LOOPBACK, span: int = 1) -> int:
    """A port on ``host`` free for UDP and/or TCP right now (SIP listens on both).

    ``span`` > 1: the ports after it are free too (baresip also listens for
    SIP over TLS on the SIP port + 1)."""
    kinds = tuple(_KINDS[name] for name, wanted in (("udp", udp), ("tcp", tcp)) if wanted)
    if not kinds:
        raise ValueError("free_port needs udp, tcp or both")
    for _ in range(_TRIES):
        port = _os_port(kinds[0], host)
        if port + span <= 65536 and _all_free(range(port, port + span), kinds, host):
            return port
    raise RuntimeError(f"the OS handed out no port free for {kinds} on {host}")


def free_udp_span(count: int, *, even: bool = True, host: str = LOOPBACK) -> int:
    """First port of ``count`` consecutive UDP ports on ``host``, all free right now.

    ``even`` (RTP's convention, RFC 3550 §11) rounds the OS's port down to even.
    """
    if count < 1:
        raise ValueError(f"a span holds at least one port (got {count})")
    for _ in range(_TRIES):
        port = _os_port(socket.SOCK_DGRAM, host)
        if even:
            port &= ~1
        if port + count > 65536:
            continue
        if _all_free(range(port, port + count), (socket.SOCK_DGRAM,), host):
            return port
    raise RuntimeError(f"no {count} consecutive free UDP ports on {host}")


def rtp_window(calls: int = 8, *, slack: int = 4, host: str = LOOPBACK) -> tuple[int, int]:
    """``(rtp_port_min, rtp_port_max)`` for ``calls`` simultaneous RTP sessions.

    Each session takes an even port (its RTCP neighbour is left alone), so the
    window holds ``(calls + slack) * 2`` ports, all free when chosen; ``slack``
    even ports may be taken by others before the pool gets there.
    """
    span = (calls + slack) * 2
    low = free_udp_span(span, even=True, host=host)
    return low, low + span - 1


def udp_bound(port: int, host: str = LOOPBACK) -> bool:
    """Whether some process has bound UDP ``host:port`` (or the wildcard) -- read from
    /proc/net/udp, so asking does not itself take the port from the process starting up."""
    wanted = {socket.inet_aton(host)[::-1].hex().upper(), "00000000"}
    with open("/proc/net/udp", encoding="ascii") as table:
        next(table)  # header
        for line in table:
            address, _, hex_port = line.split()[1].partition(":")
            if int(hex_port, 16) == port and address in wanted:
                return True
    return False
