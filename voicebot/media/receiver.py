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
#: Datagrams that arrived before a session started are discarded, this many at most.
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
        self._selector: selectors.BaseSelector | None = None
        self._log = logger or get_logger(component="rtp_receiver")
        #: Datagrams read; ticks that ended with a socket still holding datagrams
        #: (it sent more than `max_packets_per_tick`: a flood, or a long stall).
        self.datagrams = 0
        self.capped_ticks = 0
        self._mid_tick = _MidTickRead(self)
        self._rounds_since_tick = 0  # taken by the mid-tick read since the last tick

    @property
    def sockets(self) -> int:
        return 0 if self._selector is None else len(self._selector.get_map())

    def add(self, sock: socket.socket, handler: DatagramHandler) -> None:
        """Read `sock` on every tick from now on; what queued before is discarded."""
        discard_queued(sock)
        if sock.family == socket.AF_INET6:
            inner = handler

            def handler(data: bytes, addr: Any) -> None:
                inner(data, (addr[0], addr[1]))

        if self._selector is None:
            self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ, handler)
        clock = self._clock()
        if clock is not None:
            clock.subscribe(self, RECEIVE)
            clock.subscribe(self._mid_tick, MID_RECEIVE)

    def remove(self, sock: socket.socket) -> None:
        """Stop reading `sock` (before it is closed: a closed socket's fd is reused)."""
        selector = self._selector
        if selector is None:
            return
        try:
            selector.unregister(sock)
        except (KeyError, ValueError):
            return
        if not selector.get_map():
            selector.close()
            self._selector = None
            clock = self._clock()
            if clock is not None:
                clock.unsubscribe(self)
                clock.unsubscribe(self._mid_tick)

    def on_tick(self, tick_no: int) -> None:
        rounds = max(1, self.max_packets_per_tick - self._rounds_since_tick)
        self._rounds_since_tick = 0
        self._read(rounds)
        selector = self._selector
        if selector is not None and selector.select(0):
            self.capped_ticks += 1

    def on_mid_tick(self) -> None:
        """Half-way to the next tick: what arrived since (an RFC 4733 key) is
        taken now, with at most half the tick's rounds."""
        self._rounds_since_tick += self._read(max(1, self.max_packets_per_tick // 2))

    def _read(self, rounds: int) -> int:
        """Up to `rounds` rounds of one datagram per ready socket; the rounds that read."""
        for done in range(rounds):
            selector = self._selector  # None once a handler closed the last session
            ready = selector.select(0) if selector is not None else None
            if not ready:
                return done
            for key, _events in ready:
                try:
                    data, addr = key.fileobj.recvfrom(MAX_DATAGRAM)  # type: ignore[union-attr]
                except OSError:
                    continue  # raced away (BlockingIOError), or closed by a handler meanwhile
                self.datagrams += 1
                try:
                    key.data(data, addr)
                except Exception:
                    # One session's bug must not stop the reading of every other call.
                    self._log.exception("rtp.receive_failed")
        return rounds


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
