"""Registration state machine (voicebot.sip.registration), driven by a scripted registrar."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.clock import ManualClock
from voicebot.settings import SipSettings
from voicebot.sip.message import SipRequest, SipResponse, build_response
from voicebot.sip.registration import Registration, RegistrationState
from voicebot.sip.transaction import TransactionTimeout

Reply = Callable[[SipRequest], SipResponse] | type[Exception]


def settings(**overrides) -> SipSettings:
    base = {"mode": "register", "server": "pbx.test", "username": "201", "password": "pw"}
    return SipSettings(**{**base, **overrides})


class ScriptedRegistrar:
    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[SipRequest] = []

    async def send(self, request: SipRequest, destination: tuple[str, int]) -> SipResponse:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, type):
            raise reply("no answer")
        return reply(request)


def challenge(status: int, nonce: str = "n1") -> Reply:
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    value = f'Digest realm="pbx", nonce="{nonce}", qop="auth", algorithm=MD5'
    return lambda r: build_response(r, status, headers=[(header, value)])


def ok(contact_expires: int | None = None, expires: int | None = None) -> Reply:
    def reply(request: SipRequest) -> SipResponse:
        headers = []
        contact = request.headers.get("Contact") or ""
        if contact_expires is not None:
            contact += f";expires={contact_expires}"
        headers.append(("Contact", contact))
        if expires is not None:
            headers.append(("Expires", str(expires)))
        return build_response(request, 200, headers=headers)

    return reply


def status(code: int, *headers: tuple[str, str]) -> Reply:
    return lambda r: build_response(r, code, headers=list(headers))


async def resolve(host: str, port: int) -> tuple[str, int]:
    return "192.0.2.1", port


def make(registrar: ScriptedRegistrar, **overrides) -> Registration:
    return Registration(
        settings(**overrides), send=registrar.send, contact=("10.0.0.5", 5062), resolve=resolve
    )


async def test_401_then_200_honours_contact_expires() -> None:
    registrar = ScriptedRegistrar(challenge(401), ok(contact_expires=120, expires=3600))
    reg = make(registrar)
    delay = await reg._attempt(expires=300)
    assert reg.state == RegistrationState.REGISTERED
    assert reg.granted_expires == 120 and 60 <= delay <= 96  # ~0.5-0.8 of what was granted
    first, second = registrar.requests
    assert "Authorization" not in first.headers
    auth = second.headers.get("Authorization") or ""
    assert auth.startswith("Digest ") and "qop=auth" in auth and 'uri="sip:pbx.test"' in auth
    assert second.cseq[0] == first.cseq[0] + 1 and second.call_id == first.call_id
    assert second.headers.get("Contact") == "<sip:201@10.0.0.5:5062>"


async def test_effective_state_is_expired_once_the_grant_runs_out() -> None:
    clock = ManualClock()
    reg = Registration(
        settings(),
        send=ScriptedRegistrar(ok(expires=120)).send,
        contact=("10.0.0.5", 5062),
        resolve=resolve,
        clock=clock,
    )
    assert reg.effective_state(clock.now()) == "unregistered"
    await reg._attempt(expires=300)
    # The grant runs on the injected clock, the one /healthz and /metrics read.
    assert reg.expires_at == clock.now() + timedelta(seconds=120)
    clock.advance(119)
    assert reg.effective_state(clock.now()) == "registered"
    clock.advance(1)
    # The refresh is still retransmitting, but the PBX has dropped us by now.
    assert reg.effective_state(clock.now()) == "expired"


async def test_407_answered_with_proxy_authorization() -> None:
    registrar = ScriptedRegistrar(challenge(407), ok(expires=60))
    reg = make(registrar)
    await reg._attempt(expires=300)
    assert reg.state == RegistrationState.REGISTERED and reg.granted_expires == 60
    assert "Proxy-Authorization" in registrar.requests[1].headers


async def test_same_nonce_rejected_twice_means_wrong_credentials() -> None:
    registrar = ScriptedRegistrar(challenge(401), challenge(401))
    reg = make(registrar)
    delay = await reg._attempt(expires=300)
    assert reg.state == RegistrationState.FAILED
    assert "credentials rejected" in (reg.last_error or "")
    assert delay == 1.0 and len(registrar.requests) == 2


async def test_423_retries_with_min_expires() -> None:
    registrar = ScriptedRegistrar(status(423, ("Min-Expires", "600")), ok())
    reg = make(registrar)
    await reg._attempt(expires=300)
    assert registrar.requests[1].headers.get("Expires") == "600"
    assert reg.granted_expires == 600


@pytest.mark.parametrize("failure", [TransactionTimeout, status(503), status(403)])
async def test_failures_back_off_exponentially_capped(failure: Reply) -> None:
    registrar = ScriptedRegistrar(*([failure] * 9))
    reg = make(registrar)
    delays = [await reg._attempt(expires=300) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert reg.state == RegistrationState.FAILED and reg.last_error


async def test_backoff_resets_once_the_registrar_answers_again() -> None:
    registrar = ScriptedRegistrar(
        TransactionTimeout, TransactionTimeout, ok(expires=100), TransactionTimeout
    )
    reg = make(registrar)
    assert [await reg._attempt(expires=300) for _ in range(4)] == [1, 2, 70, 1]


async def test_run_loop_sleeps_what_attempts_return_and_stop_unregisters() -> None:
    """The loop itself: a failed round sleeps the back-off, the next round
    registers and sleeps what the grant allows, and stop() un-registers."""
    slept: list[float] = []
    second_sleep = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            second_sleep.set()
            await asyncio.Event().wait()  # park until stop() cancels us

    registrar = ScriptedRegistrar(TransactionTimeout, ok(expires=200), ok())
    reg = Registration(
        settings(), send=registrar.send, contact=("10.0.0.5", 5062), resolve=resolve, sleep=sleep
    )
    expected_refresh = await make(ScriptedRegistrar(ok(expires=200)))._attempt(expires=300)
    reg.start()
    await asyncio.wait_for(second_sleep.wait(), 2)
    # Round 1 timed out: back off 1 s. Round 2 (run by the loop after that
    # sleep) was granted 200 s: refresh when the grant says, as one attempt does.
    assert slept == [1.0, expected_refresh] and 0 < expected_refresh < 200
    assert reg.state == RegistrationState.REGISTERED
    assert len(registrar.requests) == 2
    await reg.stop()
    assert registrar.requests[-1].headers.get("Expires") == "0"
    assert reg.state == RegistrationState.UNREGISTERED and reg.expires_at is None
