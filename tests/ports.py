"""Free loopback ports for tests: the one place a test gets a port from.

Ports come from outside the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``), so no ``bind(port 0)``, no
unbound ``sendto`` and no outgoing connection anywhere on the machine is ever
handed one of them. Under pytest-xdist each worker owns its own slice of that
pool and walks it in order, so two workers never pick the same port and one
worker does not pick a port again until it has gone round its whole slice.
A pick is still bound once to prove it is free (a daemon, another test run on
the box, a process a test left behind), then released for the process that
will use it.

Before this, ports were the kernel's own ``bind(port 0)`` picks: between the
release and the bot's start (a second of Python start-up) another worker's
socket, SIPp or RTP window could be handed the same port, and CI once failed
with "SIP (UDP) cannot listen ... address already in use". Random bases are
no better: they collide with whatever else holds ports in that range.

A span (SIPp's media ports, an RTP window for a bot or a softphone) is a run
of consecutive ports that are all free when chosen. RTP windows are still
sized with slack: the bot's and the softphone's `RtpPortPool` skip a port
someone took meanwhile, so a window never runs dry (`RtpPortsExhausted`)
because one port was stolen.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from pathlib import Path

__all__ = ["LOOPBACK", "free_port", "free_udp_span", "rtp_window", "udp_bound"]

LOOPBACK = "127.0.0.1"
_TRIES = 200
_KINDS = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}
# Below it: the bot's default RTP range (20000-20999), pyVoIP's (10000-20000),
# SIPp's default media port (6000) and the well-known ports.
POOL_FLOOR = 21000
_MIN_POOL = 2048
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range(table: Path = _EPHEMERAL) -> tuple[int, int]:
    """The kernel's ephemeral ports (Linux's default when it cannot be read)."""
    try:
        low, high = (int(field) for field in table.read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def pool(ephemeral: tuple[int, int]) -> range:
    """Ports no automatic bind can take: below the ephemeral range, else above it."""
    low, high = ephemeral
    below = range(POOL_FLOOR, low)
    above = range(max(high + 1, POOL_FLOOR), 65536)
    best = max(below, above, key=len)
    if len(best) < _MIN_POOL:
        raise RuntimeError(
            f"the ephemeral port range {low}-{high} leaves fewer than {_MIN_POOL} ports"
            f" at or above {POOL_FLOOR} for tests; narrow net.ipv4.ip_local_port_range"
        )
    return best


def worker_slice(ports: range, worker: str | None, workers: str | None) -> range:
    """This xdist worker's share of ``ports`` (``gw3`` of 4: the fourth quarter)."""
    index = int(worker[2:]) if worker and worker.startswith("gw") and worker[2:].isdigit() else 0
    count = int(workers) if workers and workers.isdigit() and int(workers) > 0 else 1
    index = min(index, count - 1)
    size = len(ports) // count
    return range(ports.start + index * size, ports.start + (index + 1) * size)


class _Cursor:
    """Walks this process's slice in order from a random start (so two test runs
    on one box rarely walk the same ports at the same time)."""

    def __init__(self) -> None:
        self._ports: range | None = None
        self._next = 0

    def _slice(self) -> range:
        if self._ports is None:
            self._ports = worker_slice(
                pool(ephemeral_range()),
                os.environ.get("PYTEST_XDIST_WORKER"),
                os.environ.get("PYTEST_XDIST_WORKER_COUNT"),
            )
            self._next = random.randrange(len(self._ports))
        return self._ports

    def take(self, count: int, *, even: bool) -> int:
        """First port of ``count`` consecutive ports of the slice, the cursor moved past them."""
        ports = self._slice()
        if count > len(ports):
            raise ValueError(f"a span of {count} ports is longer than this worker's {len(ports)}")
        start = ports.start + self._next
        if even:
            start += start & 1
        if start + count > ports.stop:
            start = ports.start + (ports.start & 1 if even else 0)
        self._next = start + count - ports.start
        return start


_cursor = _Cursor()


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
        port = _cursor.take(span, even=False)
        if _all_free(range(port, port + span), kinds, host):
            return port
    raise RuntimeError(f"no port free for {kinds} on {host} in {_TRIES} tries")


def free_udp_span(count: int, *, even: bool = True, host: str = LOOPBACK) -> int:
    """First port of ``count`` consecutive UDP ports on ``host``, all free right now.

    ``even`` (RTP's convention, RFC 3550 §11): the span starts on an even port.
    """
    if count < 1:
        raise ValueError(f"a span holds at least one port (got {count})")
    for _ in range(_TRIES):
        port = _cursor.take(count, even=even)
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
