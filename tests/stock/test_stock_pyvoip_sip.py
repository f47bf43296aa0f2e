"""Characterisation: the SIP-side gaps of STOCK pyVoIP 1.6.8, next to voicebot's fix.

Stock objects (`pyVoIP.SIP.SIPClient`, `pyVoIP.VoIP.VoIPPhone`/`VoIPCall`)
are driven with crafted bytes through their own receive/parse methods, with
a recording socket in place of `SIPClient.out` (nothing leaves the host), or
on loopback for REGISTER. Each stock assertion fails if a pyVoIP release
fixes the gap. Covered elsewhere, not repeated: the empty-header INVITE
(tests/sip/test_message.py) and MD5-only digest (tests/sip/test_digest.py).
"""

from __future__ import annotations

import asyncio
import select
import socket
from types import SimpleNamespace

import pytest
import pyVoIP
import pyVoIP.VoIP  # must precede pyVoIP.SIP (circular import)
from pyVoIP.SIP import InvalidAccountInfoError, SIPClient, SIPMessage, SIPParseError
from pyVoIP.VoIP import CallState, VoIPPhone

from tests.sip.handoff import each_call
from voicebot.settings import SipSettings
from voicebot.sip.call import CallCancelled, IncomingCall
from voicebot.sip.message import SipResponse, parse_message
from voicebot.sip.user_agent import UserAgent

HOST = "127.0.0.1"
SERVER = ("192.0.2.10", 5060)  # the configured PBX (TEST-NET-1: never reached)
CALLER = ("198.51.100.7", 5070)  # where the requests below come from (their top Via)


class RecordingSocket:
    """Stands in for SIPClient.out / .s: records sendto, replays queued datagrams."""

    def __init__(self, *incoming: bytes) -> None:
        self.incoming = list(incoming)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))

    def recv(self, size: int) -> bytes:
        return self.incoming.pop(0)

    def setblocking(self, flag: bool) -> None:
        pass

    def statuses(self) -> list[tuple[str, tuple[str, int]]]:
        return [(data.split(b"\r\n", 1)[0].decode(), address) for data, address in self.sent]


def stock_client(call_callback=None) -> tuple[SIPClient, RecordingSocket]:
    client = SIPClient(
        *SERVER, "201", "pw", phone=None, myIP=HOST, myPort=5062, callCallback=call_callback
    )
    client.s = client.out = RecordingSocket()
    return client, client.out


def request(method: str, via: tuple[str, int] = CALLER, cseq: int = 1, body: bytes = b"") -> bytes:
    """A request from `via`; CANCEL shares the INVITE's branch (RFC 3261 §9.1)."""
    host, port = via
    branch = "z9hG4bK-invite-1" if method == "CANCEL" else f"z9hG4bK-{method.lower()}-1"
    head = (
        f"{method} sip:bot@{HOST}:5062 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
        f'From: "Ann" <sip:201@{host}>;tag=a1\r\n'
        f"To: <sip:bot@{HOST}>\r\n"
        f"Call-ID: c1@{host}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:201@{host}:{port}>\r\n"
        "Max-Forwards: 70\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)


class Peer:
    """A bare UDP socket playing the PBX against voicebot's UserAgent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    async def recv(self, timeout: float = 1.0) -> SipResponse:
        loop = asyncio.get_running_loop()
        message = parse_message(await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout))
        assert isinstance(message, SipResponse)
        return message

    async def final(self) -> SipResponse:
        while (response := await self.recv()).status < 200:
            pass
        return response


async def never_called(call: IncomingCall) -> None:
    raise AssertionError("no call expected")


# -- 7a. requests outside INVITE/ACK/BYE/CANCEL get no answer at all ------------

OTHER_METHODS = ["OPTIONS", "INFO", "REFER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "UPDATE", "PRACK"]


@pytest.mark.parametrize("method", OTHER_METHODS)
def test_stock_never_answers_options_and_other_methods(method: str) -> None:
    """SIPMessage refuses the method, SIPClient.recv swallows the error, nothing is sent.

    A PBX's OPTIONS keepalive therefore times out and it marks the bot down.
    voicebot: tests/sip/test_sipp_integration.py::test_options_answered_with_allow,
    tests/sip/test_transport_transaction.py (OPTIONS 200, REFER 405) and the paired
    test below.
    """
    assert pyVoIP.SIPCompatibleMethods == ["INVITE", "ACK", "BYE", "CANCEL"]
    with pytest.raises(SIPParseError, match="Unable to decipher SIP request"):
        SIPMessage(request(method))
    client, out = stock_client(call_callback=lambda message: None)
    client.s = RecordingSocket(request(method))
    client.recv()
    assert out.sent == []


async def test_voicebot_answers_every_one_of_those_methods() -> None:
    ua, peer = UserAgent(SipSettings(bind_port=0), each_call(never_called)), Peer()
    await ua.start()
    try:
        statuses = {}
        for method in OTHER_METHODS:
            peer.sock.sendto(request(method, via=peer.address), ua.local_address)
            response = await peer.final()
            assert response.cseq[1] == method
            statuses[method] = response.status
        # OPTIONS 200 (with Allow); INFO only inside a dialog: 481; the rest 405 with Allow.
        assert statuses == {"OPTIONS": 200, "INFO": 481, **dict.fromkeys(OTHER_METHODS[2:], 405)}
    finally:
        await ua.stop()
        peer.sock.close()


def test_stock_cannot_transfer_a_call() -> None:
    """pyVoIP has no REFER to send and no NOTIFY to read: a call cannot be
    transferred, so a callback could never hand the manager to the client.

    voicebot: voicebot/sip/refer.py sends REFER in its own dialog and follows
    the NOTIFY message/sipfrag to the end (tests/sip/test_refer.py,
    tests/callbacks/test_dialler_sipp.py).
    """
    call_methods = {m.lower() for m in dir(pyVoIP.VoIP.VoIPCall)}
    client_methods = {m.lower() for m in dir(pyVoIP.SIP.SIPClient)}
    assert not {m for m in call_methods | client_methods if "refer" in m or "transfer" in m}
    assert not {m for m in client_methods if "notify" in m}
    assert "REFER" not in pyVoIP.SIPCompatibleMethods


# -- 7b. 407 on REGISTER --------------------------------------------------------

CHALLENGE = {
    401: ("Unauthorized", "WWW-Authenticate"),
    407: ("Proxy Authentication Required", "Proxy-Authenticate"),
}


def registrar_response(status: int, reason: str, *headers: str) -> bytes:
    lines = [
        f"SIP/2.0 {status} {reason}",
        f"Via: SIP/2.0/UDP {HOST}:5062;branch=z9hG4bKr;rport",
        f"From: <sip:201@{HOST}>;tag=r1",
        f"To: <sip:201@{HOST}>;tag=r2",
        "Call-ID: reg1",
        "CSeq: 1 REGISTER",
        *headers,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stock_register(*responses: bytes) -> tuple[object, list[bytes]]:
    """Run the stock REGISTER exchange on loopback; responses are queued before it starts.

    (Stock pyVoIP does not match responses to requests, so queueing up front is
    exactly what its `select`/`recv` sees.) Returns its result or exception, and
    every request the registrar received.
    """
    registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        registrar.bind((HOST, 0))
        phone_sock.bind((HOST, 0))
        client = SIPClient(
            HOST,
            registrar.getsockname()[1],
            "201",
            "pw",
            phone=SimpleNamespace(_status=None),
            myIP=HOST,
            myPort=phone_sock.getsockname()[1],
        )
        client.s = client.out = phone_sock
        client.register_timeout = 2
        for data in responses:
            registrar.sendto(data, phone_sock.getsockname())
        try:
            outcome: object = client._SIPClient__register()  # register() minus its retry timers
        except Exception as exc:
            outcome = exc
        received = []
        while select.select([registrar], [], [], 0.2)[0]:
            received.append(registrar.recv(65535))
        return outcome, received
    finally:
        registrar.close()
        phone_sock.close()


def test_stock_answers_a_401_challenge() -> None:
    """Control: the same loopback exchange with 401 is authenticated."""
    reason, header = CHALLENGE[401]
    challenge = f'{header}: Digest realm="pbx", nonce="n1", algorithm=MD5'
    outcome, received = stock_register(
        registrar_response(401, reason, challenge), registrar_response(200, "OK")
    )
    assert outcome is True
    assert len(received) == 2 and b"\r\nAuthorization: Digest " in received[1]


def test_stock_gives_up_on_a_407_challenge() -> None:
    """`if response.status == SIPStatus(407): # TODO: implement` then "invalid password".

    voicebot: tests/sip/test_registration.py::test_407_answered_with_proxy_authorization and
    tests/sip/test_sipp_integration.py::test_registers_answering_407_with_proxy_authorization.
    """
    reason, header = CHALLENGE[407]
    challenge = f'{header}: Digest realm="pbx", nonce="n1", algorithm=MD5'
    outcome, received = stock_register(
        registrar_response(407, reason, challenge), registrar_response(200, "OK")
    )
    assert isinstance(outcome, InvalidAccountInfoError)
    assert len(received) == 1  # no second REGISTER
    assert b"Authorization" not in received[0]


# -- 7c. responses go to the configured server, not to the request's Via ---------


def test_stock_sends_responses_to_the_configured_server_not_the_via() -> None:
    """An INVITE it must refuse (no call callback) and a CANCEL, both from CALLER.

    RFC 3261 §18.2.2 / RFC 3581: to the Via's `received`/`rport` (the source).
    BYE is the one method routed by Via, but by its sent-by only: `rport` and
    `received` are ignored, so behind NAT it misses too.
    voicebot: tests/sip/test_transport_transaction.py::
    test_response_goes_to_source_port_with_rport_not_to_via_host.
    """
    client, out = stock_client(call_callback=None)
    client.parse_message(SIPMessage(request("INVITE", body=SDP)))
    assert out.statuses() == [("SIP/2.0 486 Busy Here", SERVER)]

    client, out = stock_client(call_callback=lambda message: None)
    client.parse_message(SIPMessage(request("CANCEL")))
    assert out.statuses() == [("SIP/2.0 200 OK", SERVER)]

    nat_bye = request("BYE").replace(b";rport", b";rport=40123;received=203.0.113.9")
    client, out = stock_client(call_callback=lambda message: None)
    client.parse_message(SIPMessage(nat_bye))
    assert out.statuses() == [("SIP/2.0 200 OK", (CALLER[0], CALLER[1]))]  # not 203.0.113.9:40123


# -- 8. CANCEL: 200 but no 487, and the call can still be answered ---------------


def test_stock_cancel_gets_200_but_no_487_and_the_call_stays_answerable() -> None:
    """VoIPPhone.callback has no CANCEL branch; SIPClient only sends 200 to the server.

    The caller's INVITE transaction never gets its final 487, the call object
    stays RINGING and `answer()` still sends 200 OK with SDP for a cancelled call.
    voicebot: the paired test below and tests/sip/test_sipp_integration.py::
    test_cancel_before_answer_gets_487_and_is_never_answered.
    """
    phone = VoIPPhone(*SERVER, "201", "pw", myIP=HOST, callCallback=lambda call: None)
    out = RecordingSocket()
    phone.sip.s = phone.sip.out = out
    phone.sip.parse_message(SIPMessage(request("INVITE", body=SDP)))
    for timer in phone.threads:  # VoIPPhone starts the app callback on a Timer(1 s)
        timer.cancel()
        timer.join(2)
    (call,) = phone.calls.values()
    assert out.statuses() == [("SIP/2.0 180 Ringing", SERVER)]

    phone.sip.parse_message(SIPMessage(request("CANCEL")))
    assert out.statuses()[1:] == [("SIP/2.0 200 OK", SERVER)]  # the CANCEL's 200 ...
    assert not any(b" 487 " in data.split(b"\r\n", 1)[0] for data, _ in out.sent)  # ... no 487
    assert call.state == CallState.RINGING

    started = []
    for rtp in call.RTPClients:  # answer() starts them: record it, open no sockets/threads
        rtp.start = lambda rtp=rtp: started.append(rtp)
    call.answer()
    assert started == call.RTPClients != []  # media started for a cancelled call
    answer, target = out.sent[-1]
    assert answer.startswith(b"SIP/2.0 200 OK\r\n") and b"CSeq: 1 INVITE" in answer
    assert b"m=audio" in answer and target == SERVER
    assert call.state == CallState.ANSWERED


async def test_voicebot_cancel_gets_200_and_487_and_answer_raises() -> None:
    ringing = asyncio.Event()
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    proceed = asyncio.Event()

    async def app(call: IncomingCall) -> None:
        ringing.set()
        await proceed.wait()
        try:
            await call.answer(HOST, 30000)
        except CallCancelled:
            outcome.set_result("CallCancelled")
        else:
            outcome.set_result("answered")

    ua, peer = UserAgent(SipSettings(bind_port=0), each_call(app)), Peer()
    await ua.start()
    try:
        peer.sock.sendto(request("INVITE", via=peer.address, body=SDP), ua.local_address)
        await asyncio.wait_for(ringing.wait(), 2)
        peer.sock.sendto(request("CANCEL", via=peer.address), ua.local_address)
        finals = {}
        while len(finals) < 2:
            response = await peer.recv()
            if response.status >= 200:
                finals[response.cseq[1]] = response.status
        assert finals == {"CANCEL": 200, "INVITE": 487}
        proceed.set()
        assert await asyncio.wait_for(outcome, 2) == "CallCancelled"
    finally:
        await ua.stop()
        peer.sock.close()
