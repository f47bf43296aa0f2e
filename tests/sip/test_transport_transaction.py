"""UDP transport (400 for malformed, keepalives, §18.2.2 routing) and transaction timers."""

from __future__ import annotations

import asyncio
import socket

from tests.sip.handoff import each_call
from voicebot.settings import SipSettings
from voicebot.sip.call import IncomingCall
from voicebot.sip.message import SipRequest, SipResponse, parse_message
from voicebot.sip.transaction import TransactionLayer, TransactionTimeout
from voicebot.sip.transport import MAX_DATAGRAMS_PER_WAKEUP, SipTransport
from voicebot.sip.user_agent import UserAgent


async def nobody(call: IncomingCall) -> None:
    raise AssertionError


def options(via: str, branch: str = "z9hG4bKo1") -> bytes:
    return (
        f"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch}\r\n"
        "From: <sip:pbx@127.0.0.1>;tag=p\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: o1\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Peer:
    """A bare UDP socket playing the PBX."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def recv(self, timeout: float = 1.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)

    async def silent(self, timeout: float = 0.3) -> bool:
        try:
            await self.recv(timeout)
        except TimeoutError:
            return True
        return False


async def started() -> UserAgent:
    ua = UserAgent(SipSettings(bind_port=0), each_call(nobody))
    await ua.start()
    return ua


async def test_malformed_request_with_readable_via_gets_400_then_keeps_working() -> None:
    ua, peer = await started(), Peer()
    try:
        port = peer.sock.getsockname()[1]
        bad = options(f"127.0.0.1:{port}").replace(b"CSeq: 1 OPTIONS", b"CSeq: one")
        peer.sock.sendto(bad, ua.local_address)
        assert (await peer.recv()).startswith(b"SIP/2.0 400 ")
        peer.sock.sendto(b"\x00\xffnot sip at all", ua.local_address)
        peer.sock.sendto(b"\r\n\r\n", ua.local_address)  # RFC 5626 keepalive
        assert await peer.silent()
        peer.sock.sendto(options(f"127.0.0.1:{port}"), ua.local_address)
        ok = parse_message(await peer.recv())
        assert isinstance(ok, SipResponse) and ok.status == 200
    finally:
        await ua.stop()


async def test_response_goes_to_source_port_with_rport_not_to_via_host() -> None:
    ua, peer = await started(), Peer()
    try:
        # Via names an address nobody listens on; rport asks for the source (RFC 3581).
        peer.sock.sendto(options("198.51.100.9:5999;rport"), ua.local_address)
        response = parse_message(await peer.recv())
        assert isinstance(response, SipResponse) and response.status == 200
        via = response.top_via
        assert via.received == "127.0.0.1" and via.rport == peer.sock.getsockname()[1]
        assert "INFO" in (response.headers.get("Allow") or "")
    finally:
        await ua.stop()


async def test_retransmitted_request_is_absorbed_and_answered_again() -> None:
    ua, peer = await started(), Peer()
    try:
        message = (
            b"REFER sip:bot@127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bKr\r\n"
            b"From: <sip:pbx@h>;tag=p\r\nTo: <sip:bot@h>\r\nCall-ID: r1\r\nCSeq: 1 REFER\r\n\r\n"
        )
        peer.sock.sendto(message, ua.local_address)
        first = await peer.recv()
        peer.sock.sendto(message, ua.local_address)
        assert await peer.recv() == first  # same bytes, same To tag
        response = parse_message(first)
        assert isinstance(response, SipResponse) and response.status == 405
        assert response.headers.get("Allow")
    finally:
        await ua.stop()


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    def send(self, data: bytes, destination: tuple[str, int]) -> None:
        self.sent.append((asyncio.get_running_loop().time(), data))


async def test_client_non_invite_retransmits_on_timer_e_and_times_out_on_f() -> None:
    recorder = Recorder()
    layer = TransactionLayer(recorder, t1=0.02)
    request = parse_message(options("127.0.0.1:5060", "z9hG4bKe"))
    assert isinstance(request, SipRequest)
    start = asyncio.get_running_loop().time()
    try:
        await layer.request(request, ("127.0.0.1", 9))
        raise AssertionError("expected a timeout")
    except TransactionTimeout:
        pass
    elapsed = asyncio.get_running_loop().time() - start
    # Timers are absolute deadlines: never early, and late only by what a busy
    # machine adds (kept loose: a late timer is the host, not the schedule).
    assert 64 * 0.02 - 0.002 <= elapsed < 64 * 0.02 + 1.0
    offsets = [t - start for t, _ in recorder.sent[:5]]
    due = [0.0, 0.02, 0.06, 0.14, 0.30]  # T1, 2·T1, 4·T1, 8·T1 after the first
    assert len(offsets) == len(due)
    for sent_at, due_at in zip(offsets, due, strict=True):
        assert due_at - 0.002 <= sent_at <= due_at + 0.25, (offsets, due)


async def test_server_invite_retransmits_non_2xx_until_ack() -> None:
    recorder = Recorder()
    layer = TransactionLayer(recorder, t1=0.02)
    invite = parse_message(options("127.0.0.1:5060", "z9hG4bKi").replace(b"OPTIONS", b"INVITE"))
    assert isinstance(invite, SipRequest)
    tx = layer.server_transaction(invite, ("127.0.0.1", 5060))
    assert b" 100 Trying" in recorder.sent[0][1]  # at once
    from voicebot.sip.message import build_response

    tx.respond(build_response(invite, 486, to_tag="t"))
    await asyncio.sleep(0.1)
    count = len(recorder.sent)
    assert count >= 4  # 100, 486, and retransmissions (timer G)
    ack = parse_message(options("127.0.0.1:5060", "z9hG4bKi").replace(b"OPTIONS", b"ACK"))
    assert isinstance(ack, SipRequest)
    assert layer.absorb(ack)
    await asyncio.sleep(0.1)
    assert len(recorder.sent) == count
    layer.close()


async def test_a_burst_is_read_many_datagrams_a_loop_pass() -> None:
    """While other work keeps the loop busy (the media clock at hundreds of
    calls gives it a few passes a tick), SIP messages are read
    MAX_DATAGRAMS_PER_WAKEUP a pass: asyncio's transport read one, and at 500
    calls an ACK waited up to 10 s. Counted in loop passes, not time."""
    requests: list[SipRequest] = []
    transport = await SipTransport.open(
        "127.0.0.1", 0, lambda request, source: requests.append(request), lambda r, s: None
    )
    peer = Peer()
    burst = 3 * MAX_DATAGRAMS_PER_WAKEUP
    try:
        for i in range(burst):  # loopback: queued on the bot's socket as sendto returns
            peer.sock.sendto(options("127.0.0.1:5999", f"z9hG4bKb{i}"), transport.local_address)
        passes = 0
        while len(requests) < burst and passes < 2 * burst:
            await asyncio.sleep(0)
            passes += 1
    finally:
        transport.close()
        peer.sock.close()
    assert [r.top_via.params["branch"] for r in requests] == [f"z9hG4bKb{i}" for i in range(burst)]
    assert passes <= 4  # three readiness callbacks, and the pass that sees the last
    transport.send(b"after close", ("127.0.0.1", 9))  # a no-op, not an error
