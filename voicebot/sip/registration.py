"""Registration with the PBX as an extension (RFC 3261 §10, mode = "register").

Theory of operation: one asyncio task loops "attempt, then sleep". An attempt
is a REGISTER answered within one round of challenges: 401 -> Authorization,
407 -> Proxy-Authorization (digest.py), 423 -> retry with Min-Expires. A 200
schedules the refresh at `REFRESH_FRACTION` of the Expires the registrar
*granted* (Contact ;expires= first, then Expires). Anything else — timeout,
403, 5xx, a second rejection of our credentials — marks the registration
failed and retries after a capped exponential backoff (1, 2, 4 … 60 s).
Start-up never waits on the registrar: `start()` only creates the task.

Stock pyVoIP blocked `start()` for 30 s when the registrar was silent,
answered only 401 (MD5, no qop) and re-registered every 115 s whatever the
registrar granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from voicebot.clock import Clock, SystemClock
from voicebot.logs import get_logger
from voicebot.settings import SipSettings
from voicebot.sip.capabilities import ALLOW
from voicebot.sip.digest import DigestCredentials, DigestError, choose_challenge
from voicebot.sip.message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    ascii_int,
    new_branch,
    new_call_id,
    new_tag,
)
from voicebot.sip.transaction import TransactionTimeout
from voicebot.sip.transport import Address

REFRESH_FRACTION = 0.7
BACKOFF_START = 1.0
BACKOFF_CAP = 60.0
UNREGISTER_TIMEOUT = 2.0

SendRequest = Callable[[SipRequest, Address], Awaitable[SipResponse]]
Sleep = Callable[[float], Awaitable[None]]


class RegistrationState(enum.StrEnum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class Registration:
    """Keeps `settings.username` registered at `settings.server:port`."""

    def __init__(
        self,
        settings: SipSettings,
        *,
        send: SendRequest,
        contact: Address,
        via: Address | None = None,
        logger: Any = None,
        sleep: Sleep = asyncio.sleep,
        resolve: Callable[[str, int], Awaitable[Address]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not settings.server or not settings.username:
            raise ValueError("registration needs sip.server and sip.username")
        self._settings = settings
        self._send = send
        self._contact = contact
        self._via = via or contact
        self._sleep = sleep
        self._clock: Clock = clock or SystemClock()  # expiry on the app's clock
        self._resolve = resolve or _resolve
        self._log = (logger or get_logger()).bind(
            component="sip.registration", registrar=f"{settings.server}:{settings.port}"
        )
        password = settings.password.get_secret_value() if settings.password else ""
        self._credentials = DigestCredentials(settings.username, password)
        self._call_id = new_call_id(contact[0])
        self._from_tag = new_tag()
        self._cseq = 0
        self._backoff = BACKOFF_START
        self._task: asyncio.Task[None] | None = None
        self.state = RegistrationState.UNREGISTERED
        self.last_error: str | None = None
        self.expires_at: datetime | None = None
        self.granted_expires: int | None = None
        self.registrar_address: Address | None = None

    def effective_state(self, now: datetime) -> str:
        """`state`, except "expired" once the granted Expires has run out while
        the refresh is still being retransmitted (up to 32 s): the PBX has
        already dropped us, so health and metrics must not say registered."""
        if (
            self.state == RegistrationState.REGISTERED
            and self.expires_at is not None
            and self.expires_at <= now
        ):
            return "expired"
        return str(self.state)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Begin registering in the background; returns at once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sip-register")

    async def stop(self) -> None:
        """Stop refreshing and un-register (Expires: 0) within `UNREGISTER_TIMEOUT`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.state == RegistrationState.REGISTERED:
            try:
                await asyncio.wait_for(self._attempt(expires=0), UNREGISTER_TIMEOUT)
            except (TimeoutError, TransactionTimeout, OSError) as exc:
                self._log.info(
                    "registration.unregister_failed", error=str(exc) or type(exc).__name__
                )
        self._set_state(RegistrationState.UNREGISTERED, None)
        self.expires_at = None

    async def _run(self) -> None:
        while True:
            try:
                delay = await self._attempt(expires=self._settings.register_expires)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the loop die: a PBX may come back
                self._log.exception("registration.failed")
                delay = self._fail(f"internal error: {exc}")
            await self._sleep(delay)

    # ---------------------------------------------------------------- one attempt

    async def _attempt(self, *, expires: int) -> float:
        """One REGISTER round; returns seconds until the next one."""
        if self.state != RegistrationState.REGISTERED and expires:
            self._set_state(RegistrationState.REGISTERING, self.last_error)
        try:
            if self.registrar_address is None:
                self.registrar_address = await self._resolve(
                    self._settings.server or "", self._settings.port
                )
        except OSError as exc:
            return self._fail(f"cannot resolve {self._settings.server}: {exc}")
        auth: tuple[str, str] | None = None
        answered: dict[int, list[str]] = {}  # challenge status -> nonces we answered
        for _ in range(6):
            request = self._build(expires, auth)
            try:
                response = await self._send(request, self.registrar_address)
            except TransactionTimeout:
                return self._fail("registrar did not answer (timeout)")
            status = response.status
            if 200 <= status < 300:
                return self._succeeded(response, expires)
            if status in (401, 407):
                header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
                try:
                    challenge = choose_challenge(response.headers.get_all(header))
                except DigestError as exc:
                    return self._fail(f"{status}: {exc}")
                nonces = answered.setdefault(status, [])
                # The same nonce rejected again means the password is wrong; a fresh
                # nonce earns one more try (the first may have gone stale).
                if challenge.nonce in nonces or len(nonces) >= 2:
                    return self._fail(f"{status} {response.reason}: credentials rejected")
                nonces.append(challenge.nonce)
                value = self._credentials.authorization(challenge, "REGISTER", self._request_uri())
                auth = ("Authorization" if status == 401 else "Proxy-Authorization", value)
                continue
            if status == 423:
                minimum = _seconds(response.headers.get("Min-Expires"))
                if minimum is None or minimum <= expires:
                    return self._fail("423 without a usable Min-Expires")
                self._log.info("registration.interval_too_brief", min_expires=minimum)
                expires = minimum
                continue
            return self._fail(f"{status} {response.reason}".strip())
        return self._fail("too many challenges")

    def _succeeded(self, response: SipResponse, requested: int) -> float:
        self._backoff = BACKOFF_START
        if requested == 0:
            self._set_state(RegistrationState.UNREGISTERED, None)
            return 0.0
        granted = self._granted_expires(response, requested)
        self.granted_expires = granted
        self.expires_at = self._clock.now() + timedelta(seconds=granted)
        self._set_state(RegistrationState.REGISTERED, None, expires=granted)
        return max(1.0, granted * REFRESH_FRACTION)

    def _fail(self, error: str) -> float:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_CAP)
        self._set_state(RegistrationState.FAILED, error, retry_in=delay)
        self.expires_at = None
        return delay

    def _granted_expires(self, response: SipResponse, requested: int) -> int:
        """Our Contact's ;expires= (RFC 3261 §10.2.4), else Expires, else what we asked."""
        for value in response.headers.get_all("Contact"):
            try:
                contact = NameAddr.parse(value)
            except SipParseError:
                continue
            uri = contact.uri
            ours = (uri.host, uri.port or 5060) == (self._contact[0], self._contact[1])
            expires = _seconds(contact.params.get("expires"))
            if ours and expires is not None:
                return expires
        header = _seconds(response.headers.get("Expires"))
        return header if header is not None else requested

    # ---------------------------------------------------------------- the request

    def _request_uri(self) -> str:
        port = self._settings.port
        return str(SipUri(host=self._settings.server or "", port=port if port != 5060 else None))

    def _build(self, expires: int, auth: tuple[str, str] | None) -> SipRequest:
        settings = self._settings
        self._cseq += 1
        aor = SipUri(host=settings.server or "", user=settings.username)
        contact = SipUri(host=self._contact[0], port=self._contact[1], user=settings.username)
        via = Via(
            host=self._via[0], port=self._via[1], params={"branch": new_branch(), "rport": None}
        )
        headers = Headers(
            [
                ("Via", str(via)),
                ("Max-Forwards", "70"),
                ("From", str(NameAddr(aor, params={"tag": self._from_tag}))),
                ("To", str(NameAddr(aor))),
                ("Call-ID", self._call_id),
                ("CSeq", f"{self._cseq} REGISTER"),
                ("Contact", str(NameAddr(contact))),
                ("Expires", str(expires)),
                ("Allow", ALLOW),
                ("User-Agent", settings.user_agent),
            ]
        )
        if auth is not None:
            headers.add(*auth)
        return SipRequest(headers, b"", method="REGISTER", uri=self._request_uri())

    def _set_state(self, state: RegistrationState, error: str | None, **extra: Any) -> None:
        changed = state != self.state or error != self.last_error
        self.state = state
        self.last_error = error
        if changed:
            log = self._log.warning if state == RegistrationState.FAILED else self._log.info
            log("sip_registration_state", state=str(state), error=error, **extra)


async def _resolve(host: str, port: int) -> Address:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=2)  # SOCK_DGRAM
    if not infos:
        raise OSError(f"no address for {host}")
    address = infos[0][4]
    return str(address[0]), int(address[1])


def _seconds(text: str | None) -> int | None:
    """An Expires-style delta-seconds value (RFC 3261 §20.19), None when absent or bad."""
    if not text:
        return None
    try:
        return ascii_int(text, "delta-seconds", maximum=2**32 - 1)
    except SipParseError:
        return None
