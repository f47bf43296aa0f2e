"""Every call's RTP is read on the media clock's tick, a bounded number of packets per socket.

The first version gave each call's port to the event loop: one readiness
callback per datagram (`_read_ready` -> `datagram_received` -> the session),
25 000 of them a second at 500 talking calls, each paying the loop's handle
and transport machinery, and each one landing wherever the loop was, before
or between the calls' sends. Now the RTP sockets are not in the event loop's
selector at all. `RtpReceiver` keeps them in a selector of its own and, in
the clock's RECEIVE phase (after every call has sent its packet of the
tick), reads them in rounds: one `select(0)` lists the sockets with a
datagram waiting, one datagram is read from each, and the next round does
the same, for at most `MAX_PACKETS_PER_TICK` rounds. No empty read, no
exception per socket, and fairness between calls comes from the rounds.

The rounds use the kernel's readiness list as it comes: on Linux an
`select.epoll` of the RTP sockets, polled directly, and a table from file
descriptor to the socket's `recvfrom` and its session's handler. Through
`selectors` every ready socket cost a Python-level lookup and a key tuple
before its read (measured at 500 talking calls with `bench/rtp_path.py`);
elsewhere the portable `selectors.DefaultSelector` is still what polls.

Hostile input stays bounded: a socket flooded with datagrams gives at most
`MAX_PACKETS_PER_TICK` of them per tick (160 ms of audio per 20 ms tick,
enough to catch up after a stalled loop); the rest wait in the kernel, whose
receive buffer drops what does not fit. Every datagram that is read goes
through the session's own checks (strict source, probation, parse), exactly
as before.

Latency: the sockets are also read half-way between two ticks (the clock's
`MID_RECEIVE`), so a datagram waits in the kernel half a tick at most (10 ms),
not a whole one: an RFC 4733 key is reported up to 10 ms after it arrived
(it was 20, on the tick alone). The rounds are shared: the mid-tick read
takes at most half of `MAX_PACKETS_PER_TICK`, the tick's read the rest, so a
flood still costs that many reads a tick. In-band audio loses nothing either
way: what a read takes in is analysed in the same tick or mid-tick.
"""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import weakref
from collections.abc import Callable
from typing import Any

import structlog

from voicebot.logs import get_logger
from voicebot.media.clock import MID_RECEIVE, RECEIVE, MediaClock

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address], None]

#: Datagrams read from one socket in one tick at most (a phone sends one per 20 ms).
MAX_PACKETS_PER_TICK = 8
#: Largest datagram read; a longer one is truncated (and then fails the RTP parse).
MAX_DATAGRAM = 2048
#: Datagrams `discard_queued` drops at most (a session's start, a call's answer).
MAX_STALE_DATAGRAMS = 256


class RtpReceiver:
    """Reads the registered sockets in the clock's RECEIVE phase; one per `MediaClock`."""

    def __init__(
        self,
        clock: MediaClock,
        max_packets_per_tick: int = MAX_PACKETS_PER_TICK,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._clock = weakref.ref(clock)  # the clock's cache holds us: no cycle through it
        self.max_packets_per_tick = max_packets_per_tick
        # Open only while a socket is registered, so an idle receiver holds no fd.
        self._poller: _Poller | None = None
        #: fd -> (the socket, its recvfrom, the handler of its datagrams)
        self._table: dict[int, tuple[socket.socket, _RecvFrom, DatagramHandler]] = {}
        self._log = logger or get_logger(component="rtp_receiver")
        #: Datagrams read; ticks that ended with a socket still holding datagrams
        #: (it sent more than `max_packets_per_tick`: a flood, or a long stall).
        self.datagrams = 0
        self.capped_ticks = 0
        self._mid_tick = _MidTickRead(self)
        self._rounds_since_tick = 0  # taken by the mid-tick read since the last tick

    @property
    def sockets(self) -> int:
        return len(self._table)

    def add(self, sock: socket.socket, handler: DatagramHandler) -> None:
        """Read `sock` on every tick from now on, what queued before included
        (whether that is stale is the session's call: `RtpSession.start`)."""
        if sock.family == socket.AF_INET6:
            inner = handler

            def handler(data: bytes, addr: Any) -> None:
                inner(data, (addr[0], addr[1]))

        fd = sock.fileno()
        if self._poller is None:
            self._poller = _Poller()
        stale = self._table.get(fd)
        if stale is not None:
            if stale[0].fileno() == fd:
                raise KeyError(f"socket fd {fd} is already read")
            self._poller.unregister(fd)  # closed without remove(): its fd was reused
        self._poller.register(fd)
        self._table[fd] = (sock, sock.recvfrom, handler)
        clock = self._clock()
        if clock is not None:
            clock.subscribe(self, RECEIVE)
            clock.subscribe(self._mid_tick, MID_RECEIVE)

    def remove(self, sock: socket.socket) -> None:
        """Stop reading `sock` (before it is closed: a closed socket's fd is reused)."""
        poller = self._poller
        fd = sock.fileno()
        if self._table.get(fd, (None,))[0] is not sock:  # closed already: its fd is -1
            fd = next((fd for fd, entry in self._table.items() if entry[0] is sock), -1)
        if poller is None or fd < 0:
            return
        del self._table[fd]
        poller.unregister(fd)
        if not self._table:
            poller.close()
            self._poller = None
            clock = self._clock()
            if clock is not None:
                clock.unsubscribe(self)
                clock.unsubscribe(self._mid_tick)

    def on_tick(self, tick_no: int) -> None:
        rounds = max(1, self.max_packets_per_tick - self._rounds_since_tick)
        self._rounds_since_tick = 0
        self._read(rounds)
        poller = self._poller
        if poller is not None and poller.ready():
            self.capped_ticks += 1

    def on_mid_tick(self) -> None:
        """Half-way to the next tick: what arrived since (an RFC 4733 key) is
        taken now, with at most half the tick's rounds."""
        self._rounds_since_tick += self._read(max(1, self.max_packets_per_tick // 2))

    def _read(self, rounds: int) -> int:
        """Up to `rounds` rounds of one datagram per ready socket; the rounds that read."""
        table = self._table
        for done in range(rounds):
            poller = self._poller  # None once a handler closed the last session
            ready = poller.ready() if poller is not None else None
            if not ready:
                return done
            for fd, _events in ready:
                entry = table.get(fd)
                if entry is None:
                    continue  # a handler earlier in the round closed its session
                try:
                    data, addr = entry[1](MAX_DATAGRAM)
                except OSError:
                    continue  # raced away (BlockingIOError), or closed by a handler meanwhile
                self.datagrams += 1
                try:
                    entry[2](data, addr)
                except Exception:
                    # One session's bug must not stop the reading of every other call.
                    self._log.exception("rtp.receive_failed")
        return rounds


_RecvFrom = Callable[[int], tuple[bytes, Any]]


class _Poller:
    """Readiness of registered fds without waiting: `select.epoll` where the OS
    has it, else `selectors.DefaultSelector`; `ready()` lists (fd, events)."""

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._selector = selectors.DefaultSelector() if self._epoll is None else None

    def register(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            assert self._selector is not None
            self._selector.register(fd, selectors.EVENT_READ)

    def unregister(self, fd: int) -> None:
        # A closed fd has already left an epoll set (and the selector's check raises).
        with contextlib.suppress(KeyError, ValueError, OSError):
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:
                assert self._selector is not None
                self._selector.unregister(fd)

    def ready(self) -> list[tuple[int, int]]:
        if self._epoll is not None:
            return self._epoll.poll(0)
        assert self._selector is not None
        return [(key.fd, events) for key, events in self._selector.select(0)]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        elif self._selector is not None:
            self._selector.close()


class _MidTickRead:
    """The receiver's `MID_RECEIVE` subscription (a clock calls `on_tick` in every phase)."""

    def __init__(self, receiver: RtpReceiver) -> None:
        self._receiver = weakref.ref(receiver)

    def on_tick(self, tick_no: int) -> None:
        receiver = self._receiver()
        if receiver is not None:
            receiver.on_mid_tick()


def discard_queued(sock: socket.socket) -> int:
    """Drop datagrams waiting on non-blocking `sock` (bounded); how many were dropped."""
    for dropped in range(MAX_STALE_DATAGRAMS):
        try:
            sock.recv(1)
        except OSError:
            return dropped
    return MAX_STALE_DATAGRAMS


_receivers: weakref.WeakKeyDictionary[MediaClock, RtpReceiver] = weakref.WeakKeyDictionary()


def receiver_for(clock: MediaClock) -> RtpReceiver:
    """The one `RtpReceiver` that reads RTP on `clock`'s ticks."""
    receiver = _receivers.get(clock)
    if receiver is None:
        receiver = _receivers[clock] = RtpReceiver(clock)
    return receiver
