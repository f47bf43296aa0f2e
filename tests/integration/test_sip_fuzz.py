"""Fuzz: ten thousand mutated SIP datagrams against the running app (issue 6 item 8).

A seeded mutator (tests/sip/sip_mutator.py) bends a corpus of real PBX
messages: byte flips, truncation, duplicated headers, 5 000-digit and unicode
numbers, CRLF games, SDP with ports above 65535, DVI4 alone or no c= line.
They go over loopback UDP to the whole `VoicebotApp` (short SIP timers, so
every transaction's timers run out within the test). Afterwards the bot must
still answer OPTIONS, hold no transaction, no call and no RTP port, have
grown by a bounded amount of memory, have logged no error or traceback, and
take a normal SIPp call with RFC 4733 keys to its confirmed row.

FUZZ_SEED=<n> replays another sequence; the seed is in the failure message.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import structlog

from tests.integration.conftest import (
    MakeBot,
    finished,
    needs_raw,
    needs_sipp,
    wait_rows,
)
from tests.integration.keyed_call import KEYS, assert_confirmed_3_1500, dtmf_call
from tests.sip.sip_mutator import Mutator
from tests.sip.udp_peer import UdpPeer
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp
from voicebot import app as app_module
from voicebot.app import VoicebotApp
from voicebot.sip.user_agent import UserAgent

pytestmark = [pytest.mark.sipp, needs_sipp, needs_raw]

SEED = int(os.environ.get("FUZZ_SEED", "20261129"))
DATAGRAMS = 10_000
WARM_UP = 1_000  # RSS is measured from here: imports, caches and pools are made by then
BATCH = 25
T1 = 0.02  # an un-ACKed 200 is given up after 64·T1 = 1.3 s, a transaction gone as soon
RSS_GROWTH_BOUND = 30 * 2**20  # 5 000 leaked INVITE transactions took 15.8 MB


@contextmanager
def bad_log_lines() -> Iterator[list[dict[str, Any]]]:
    """Errors and tracebacks logged while inside; every other line is dropped
    (keeping 10 000 lines would be the memory growth we are measuring)."""
    bad: list[dict[str, Any]] = []

    def keep_bad(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        if method in ("error", "critical", "exception") or event.get("exc_info"):
            bad.append({**event, "exc_info": repr(sys.exc_info()[1])})
        raise structlog.DropEvent

    old = structlog.get_config()["processors"]
    structlog.configure(processors=[keep_bad])
    try:
        yield bad
    finally:
        structlog.configure(processors=old)


class DatagramCount:
    """How many datagrams the UA's socket has handed to its protocol: the fuzz
    sends a batch, then waits for the app (in this loop) to have read it all,
    so no mutant is lost in a full socket buffer."""

    def __init__(self, ua: UserAgent) -> None:
        self.seen = 0
        protocol = ua._transport
        assert protocol is not None
        received = protocol.datagram_received

        def counting(data: bytes, addr: tuple[Any, ...]) -> None:
            self.seen += 1
            received(data, addr)

        protocol.datagram_received = counting  # type: ignore[method-assign]

    async def reached(self, n: int, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.seen < n:
            assert loop.time() < deadline, f"the UA read {self.seen} of {n} datagrams"
            await asyncio.sleep(0.001)


async def send_mutants(
    ua: UserAgent, count: DatagramCount, peer: UdpPeer, mutator: Mutator, numbers: range
) -> None:
    host, port = peer.address
    target = count.seen
    for n in numbers:
        peer.send(mutator.datagram(n, host, port), ua.local_address)
        target += 1
        if target % BATCH == 0 or n == numbers[-1]:
            await count.reached(target)
            drain_nowait(peer)  # what came back is not checked; the peer must not back up


def drain_nowait(peer: UdpPeer) -> None:
    while True:
        try:
            peer.sock.recv(65535)
        except BlockingIOError:
            return


async def settled(bot: VoicebotApp, timeout: float = 15.0) -> None:
    """Poll until nothing is left: transactions, calls, RTP ports."""
    ua, env = bot.user_agent, bot._env
    assert ua is not None and env is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = {
            "server transactions": ua.transactions.server_count,
            "client transactions": ua.transactions.client_count,
            "calls": ua.calls_in_progress,
            "app calls": len(bot._calls),
            "RTP ports": len(env.ports.in_use),
        }
        if not any(left.values()):
            return
        assert loop.time() < deadline, f"left after the fuzz (seed {SEED}): {left}"
        await asyncio.sleep(0.05)


async def options_answered(ua: UserAgent) -> int:
    peer = UdpPeer()
    try:
        host, port = peer.address
        peer.send(
            (
                "OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-after-fuzz;rport\r\n"
                f"From: <sip:pbx@{host}>;tag=after\r\nTo: <sip:bot@127.0.0.1>\r\n"
                "Call-ID: after-fuzz\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            ua.local_address,
        )
        return (await peer.response(timeout=2.0)).status
    finally:
        peer.close()


async def test_ten_thousand_mutants_leave_the_bot_answering_and_clean(
    make_bot: MakeBot, sipp: Sipp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "UserAgent", functools.partial(UserAgent, t1=T1))
    process = psutil.Process()
    with bad_log_lines() as bad:
        # No rate limit: mutants that still parse as INVITEs must reach the deep paths.
        bot = await make_bot(
            sip={"invite_rate_per_source": 100_000, "invite_burst_per_source": 100_000}
        )
        ua = bot.user_agent
        assert ua is not None
        mutator = Mutator(SEED)
        count = DatagramCount(ua)
        peer = UdpPeer()
        try:
            await send_mutants(ua, count, peer, mutator, range(WARM_UP))
            await settled(bot)
            rss_before = process.memory_info().rss
            await send_mutants(ua, count, peer, mutator, range(WARM_UP, DATAGRAMS))
            assert count.seen >= DATAGRAMS
            assert await options_answered(ua) == 200, f"seed {SEED}"
            await settled(bot)
        finally:
            peer.close()
        growth = process.memory_info().rss - rss_before
        assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.1f} MB (seed {SEED})"
        assert ua.counters.handler_errors == 0, f"seed {SEED}"
        assert not bad, f"seed {SEED}: {bad[:5]}"

        # and a real call still goes all the way through
        pcap = write_dtmf_pcap(tmp_path / "keys.pcap", KEYS, lead_in_ms=1500, gap_ms=250)
        result = await dtmf_call(sipp, bot, pcap)
        assert result.ok and result.successful_calls == 1, result.describe()
        (row,) = [r for r in await wait_rows(bot, finished) if r["digits"]]
        assert_confirmed_3_1500(row)
        assert not bad, bad[:5]
