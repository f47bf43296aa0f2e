"""The SIP side of a callback attempt: `SipDialler` implements `Dialler` (attempt.py).

Manager first (the default): ring `targets` (one after another, or all at
once and the first to answer wins, the others CANCELled), whisper to the
manager who answered (the missed number digit by digit, minutes since the
call, which attempt, then "1 to connect, 2 to call later, 3 if no callback
is needed"), read one key (RFC 4733 through the leg's `RtpSession`, or SIP
INFO through its dialog, as the menu does), and on 1 hand the manager to
the client: REFER (`transfer = "refer"`, the NOTIFY sipfrags decide the
outcome) or `voicebot.callbacks.bridge` (`transfer = "bridge"`). No key
after the question is asked twice is `no_key`.

Client first: ring the client, say "you called us, connecting you to a
manager", then REFER (or bridge) the client to the targets in turn.

Where calls go: `sip:<user>@<sip.server>:<sip.port>` in both modes; in
register mode the INVITE goes to the registrar as outbound proxy and From
is our AOR there. A target or dial string that is already a SIP URI is used
as it is.

The dialler never touches the queue: it returns one `AttemptResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from voicebot.callbacks.attempt import AttemptRequest, AttemptResult, Outcome
from voicebot.callbacks.prompts import DIALLER_PROMPT_NAMES, whisper
from voicebot.logs import get_logger
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import Codec
from voicebot.media.prompt_library import PromptLibrary
from voicebot.media.session import RtpEndpoint, RtpPortPool, RtpPortsExhausted, RtpSession
from voicebot.settings import SipSettings
from voicebot.sip.call import CallFailed, OutgoingCall
from voicebot.sip.media_session import call_rtp_session
from voicebot.sip.refer import TransferKind, TransferResult
from voicebot.sip.user_agent import UserAgent

#: How long the manager has to key after the question ends (asked twice).
KEY_TIMEOUT_S = 6.0
#: After a REFER was accepted: the client's ring time at the PBX, plus this.
TRANSFER_GRACE_S = 20.0
#: A short prompt (cb_connecting, cb_later…) is never waited for longer than this.
PROMPT_BOUND_S = 15.0
CHOICES = {"1": "connect", "2": "later", "3": "not_needed"}
RING_ALL = ("all", "parallel")

_KIND_OUTCOME: dict[TransferKind, Outcome] = {
    "completed": Outcome.COMPLETED,
    "busy": Outcome.CLIENT_BUSY,
    "no_answer": Outcome.CLIENT_NO_ANSWER,
    "failed": Outcome.FAILED,
}


class DiallerUnavailable(ValueError):
    """The settings do not say where to dial (the message names the setting)."""


def client_outcome(status: int | None) -> Outcome:
    """The outcome of ringing the client directly: 486/600 busy, 408/480/487 or
    no answer at all (None) not answered, anything else failed."""
    if status in (486, 600):
        return Outcome.CLIENT_BUSY
    if status is None or status in (408, 480, 487):
        return Outcome.CLIENT_NO_ANSWER
    return Outcome.FAILED


@dataclass
class RingFailure:
    """A leg that was not answered: its final status (None: rang out, we CANCELled)."""

    target: str
    status: int | None
    detail: str


class AnsweredLeg:
    """One answered outgoing call with its RTP session running on the media clock.

    Keys from either path arrive in `keys`; `play()` speaks prompts and
    returns when they are done (or a key cut them short, or the call ended).
    """

    def __init__(
        self,
        target: str,
        call: OutgoingCall,
        session: RtpSession,
        prompts: PromptLibrary,
    ) -> None:
        self.target = target
        self.call = call
        self.session = session
        self.codec: Codec = session.codec
        self._prompts = prompts
        self.keys: asyncio.Queue[str] = asyncio.Queue()
        session.on_key = self.keys.put_nowait
        call.on_info_key = self.keys.put_nowait

    @property
    def ended(self) -> asyncio.Future[str]:
        return self.call.ended

    async def play(self, names: Iterable[str], *, barge_in: bool = False) -> str | None:
        """Play `names` back to back; the key that interrupted them (barge_in) or None."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        frames = self._prompts.sequence(list(names), self.codec.name, self.codec.encode)

        def done() -> None:
            if not finished.done():
                finished.set_result(None)

        self.session.player.play(frames, on_finished=done)
        waits: set[asyncio.Future[Any]] = {finished, self.call.ended}
        key_task: asyncio.Task[str] | None = None
        if barge_in:
            key_task = asyncio.ensure_future(self.keys.get())
            waits.add(key_task)
        bound = len(frames) * 0.020 + PROMPT_BOUND_S
        try:
            await asyncio.wait(waits, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if key_task is not None and not key_task.done():
                key_task.cancel()
        if key_task is not None and key_task.done() and not key_task.cancelled():
            self.session.player.stop()
            return key_task.result()
        return None

    async def wait_key(self, timeout_s: float) -> str | None:
        """The next key within `timeout_s`, or None (timeout, or the call ended)."""
        key_task = asyncio.ensure_future(self.keys.get())
        try:
            await asyncio.wait(
                {key_task, self.call.ended}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not key_task.done():
                key_task.cancel()
        if key_task.done() and not key_task.cancelled():
            return key_task.result()
        return None

    async def hangup(self) -> None:
        """BYE (idempotent) and give the RTP port back."""
        with contextlib.suppress(Exception):
            await self.call.hangup()
        await self.session.close()


class SipDialler:
    """Places callback attempts over the app's `UserAgent` and media clock."""

    def __init__(
        self,
        user_agent: UserAgent,
        media_clock: MediaClock,
        ports: RtpPortPool,
        prompts: PromptLibrary,
        sip: SipSettings,
        *,
        ring_timeout_s: float = 25.0,
        key_timeout_s: float = KEY_TIMEOUT_S,
        transfer_timeout_s: float | None = None,
        now: Callable[[], datetime] | None = None,
        logger: Any = None,
    ) -> None:
        missing = [n for n in DIALLER_PROMPT_NAMES if n not in prompts]
        if missing:
            raise ValueError(f"the dialler's prompt library lacks {', '.join(missing)}")
        if not sip.server:
            raise DiallerUnavailable(
                "sip.server: callbacks dial through the PBX, so it must be set"
                ' (expected e.g. server = "pbx.example.com")'
            )
        self.user_agent = user_agent
        self.media_clock = media_clock
        self.ports = ports
        self.prompts = prompts
        self.sip = sip
        self.ring_timeout_s = ring_timeout_s
        self.key_timeout_s = key_timeout_s
        self.transfer_timeout_s = transfer_timeout_s or ring_timeout_s + TRANSFER_GRACE_S
        self._now = now or (lambda: datetime.now(UTC))
        self.log = logger or get_logger()

    # ------------------------------------------------------------------ addressing

    def uri_for(self, user: str) -> str:
        """The request-URI that reaches `user` (an extension, a dial string) at the PBX."""
        text = user.strip()
        if text.lower().startswith(("sip:", "sips:")):
            return text
        port = "" if self.sip.mode == "register" and self.sip.port == 5060 else f":{self.sip.port}"
        return f"sip:{text}@{self.sip.server}{port}"

    @property
    def from_user(self) -> str:
        return self.sip.username or "voicebot"

    # ------------------------------------------------------------------ legs

    async def place(
        self, user: str, *, stop: asyncio.Event | None = None, log: Any = None
    ) -> AnsweredLeg | RingFailure:
        """Ring `user` for `ring_timeout_s`; an answered leg with media running, or why not.

        `stop` set while ringing (another target answered) CANCELs this one.
        """
        log = (log or self.log).bind(target=user)
        try:
            endpoint = await self.ports.allocate()
        except RtpPortsExhausted as exc:
            log.warning("callback.leg_refused", reason="rtp_ports_exhausted", error=str(exc))
            return RingFailure(user, None, "no free RTP port")
        try:
            return await self._ring(user, endpoint, stop, log)
        except BaseException:
            endpoint.close()
            raise

    async def _ring(
        self, user: str, endpoint: RtpEndpoint, stop: asyncio.Event | None, log: Any
    ) -> AnsweredLeg | RingFailure:
        register = self.sip.mode == "register"
        assert self.sip.server is not None
        call = self.user_agent.invite(
            self.uri_for(user),
            from_user=self.from_user,
            local_rtp=(endpoint.host, endpoint.port),
            outbound_proxy=(self.sip.server, self.sip.port) if register else None,
            from_host=self.sip.server if register else None,
        )
        log = log.bind(sip_call_id=call.call_id)
        answered = asyncio.ensure_future(call.wait_answered(None))
        waits: set[asyncio.Future[Any]] = {answered}
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if stopper is not None:
            waits.add(stopper)
        try:
            await asyncio.wait(
                waits, timeout=self.ring_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if stopper is not None:
                stopper.cancel()
        if not answered.done():
            answered.cancel()
            why = "another target answered" if stop is not None and stop.is_set() else "rang out"
            await call.cancel()
            log.info("callback.leg_unanswered", reason=why, status=call.status)
            endpoint.close()
            return RingFailure(user, call.status if call.status != 487 else None, why)
        try:
            media = answered.result()
        except CallFailed as failed:
            log.info("callback.leg_failed", status=failed.status, reason=failed.reason)
            endpoint.close()
            return RingFailure(user, failed.status, f"{failed.status} {failed.reason}")
        session = call_rtp_session(
            endpoint, media, self.media_clock, learn_from=call.peer_host, logger=log
        )
        leg = AnsweredLeg(user, call, session, self.prompts)
        await session.start()
        log.info("callback.leg_answered", codec=leg.codec.name)
        return leg

    async def ring_targets(
        self, targets: Iterable[str], strategy: str, log: Any
    ) -> tuple[AnsweredLeg | None, list[tuple[str, int | None]]]:
        """The first target to answer (sequential, or all at once), and what each one did."""
        rang: list[tuple[str, int | None]] = []
        targets = list(targets)
        if strategy not in RING_ALL or len(targets) < 2:
            for target in targets:
                result = await self.place(target, log=log)
                if isinstance(result, AnsweredLeg):
                    rang.append((target, 200))
                    return result, rang
                rang.append((target, result.status))
            return None, rang
        stop = asyncio.Event()
        tasks = {asyncio.ensure_future(self.place(t, stop=stop, log=log)): t for t in targets}
        winner: AnsweredLeg | None = None
        pending = set(tasks)
        results: dict[str, int | None] = {}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                result = task.result()
                if isinstance(result, AnsweredLeg):
                    results[result.target] = 200
                    if winner is None:
                        winner = result
                        stop.set()
                    else:  # two answered at once: the later one is thanked and let go
                        await result.hangup()
                else:
                    results[result.target] = result.status
        rang = [(t, results.get(t)) for t in targets]
        return winner, rang

    # ------------------------------------------------------------------ the attempt

    async def attempt(self, request: AttemptRequest) -> AttemptResult:
        log = self.log.bind(job_id=request.job_id, attempt=request.attempt, order=request.order)
        log.info(
            "callback.attempt_started", targets=list(request.targets), transfer=request.transfer
        )
        try:
            if request.order == "client_first":
                result = await self._client_first(request, log)
            else:
                result = await self._manager_first(request, log)
        except Exception as exc:
            log.exception("callback.attempt_crashed")
            result = AttemptResult(Outcome.FAILED, detail=f"dialler error: {exc!r}"[:200])
        log.info(
            "callback.attempt_finished",
            outcome=str(result.outcome),
            target=result.target,
            sip_status=result.sip_status,
            detail=result.detail,
        )
        return result

    async def _manager_first(self, request: AttemptRequest, log: Any) -> AttemptResult:
        leg, rang = await self.ring_targets(request.targets, request.ring_strategy, log)
        if leg is None:
            return AttemptResult(Outcome.NO_MANAGER, detail="no target answered", rang=tuple(rang))
        try:
            return await self._with_manager(leg, request, tuple(rang), log)
        finally:
            await leg.hangup()

    async def _with_manager(
        self,
        leg: AnsweredLeg,
        request: AttemptRequest,
        rang: tuple[tuple[str, int | None], ...],
        log: Any,
    ) -> AttemptResult:
        missed_at = request.missed_at
        if missed_at.tzinfo is None:
            missed_at = missed_at.replace(tzinfo=UTC)
        said = whisper(request.client_number, missed_at, self._now(), request.attempt)
        key = await self._ask(leg, said)
        choice = CHOICES.get(key or "")
        log.info("callback.manager_choice", key=key, choice=choice or "none")

        def result(outcome: Outcome, detail: str, status: int | None = None) -> AttemptResult:
            return AttemptResult(outcome, leg.target, status, None, detail, rang)

        if leg.ended.done():
            return result(Outcome.NO_KEY, f"manager hung up ({leg.ended.result()})")
        if choice == "later":
            await leg.play(["cb_later"])
            return result(Outcome.MANAGER_LATER, "manager pressed 2")
        if choice == "not_needed":
            await leg.play(["cb_closed"])
            return result(Outcome.NOT_NEEDED, "manager pressed 3")
        if choice is None:
            return result(Outcome.NO_KEY, "no key after the question was asked twice")
        await leg.play(["cb_connecting"])
        if leg.ended.done():
            return result(Outcome.FAILED, "manager hung up before the transfer")
        if request.transfer == "bridge":
            bridged = await self._bridge(leg, request.client_dial, log)
            return AttemptResult(
                bridged.outcome,
                leg.target,
                bridged.sip_status,
                bridged.talk_s,
                bridged.detail,
                rang,
            )
        transfer = await leg.call.refer(self.uri_for(request.client_dial), self.transfer_timeout_s)
        return result(_KIND_OUTCOME[transfer.kind], _detail(transfer), transfer.status)

    async def _ask(self, leg: AnsweredLeg, said: list[str]) -> str | None:
        """Whisper, then wait for a choice; the question alone once more on silence."""
        for names in (said, ["cb_choice"]):
            while True:
                key = await leg.play(names, barge_in=True)
                if key is None:
                    key = await leg.wait_key(self.key_timeout_s)
                if key is None or key in CHOICES or leg.ended.done():
                    break
                names = ["cb_choice"]  # a key that means nothing: ask again
            if key is not None or leg.ended.done():
                return key
        return None

    async def _bridge(self, leg: AnsweredLeg, other: str, log: Any) -> AttemptResult:
        """cbbridge's relay (voicebot/callbacks/bridge.py): place `other`, relay media."""
        try:
            module = importlib.import_module("voicebot.callbacks.bridge")
        except ImportError:
            log.error("callback.bridge_missing", reason="voicebot.callbacks.bridge not installed")
            return AttemptResult(Outcome.FAILED, detail="bridge mode is not available")
        result: AttemptResult = await module.bridge(leg, other, dialler=self)
        return result

    async def _client_first(self, request: AttemptRequest, log: Any) -> AttemptResult:
        placed = await self.place(request.client_dial, log=log)
        if isinstance(placed, RingFailure):
            return AttemptResult(
                client_outcome(placed.status),
                None,
                placed.status,
                detail=f"client: {placed.detail}",
            )
        client = placed
        rang: list[tuple[str, int | None]] = []
        try:
            await client.play(["cb_client_hello"])
            for target in request.targets:
                if client.ended.done():
                    return AttemptResult(
                        Outcome.FAILED,
                        detail=f"client hung up ({client.ended.result()})",
                        rang=tuple(rang),
                    )
                if request.transfer == "bridge":
                    bridged = await self._bridge(client, target, log)
                    rang.append((target, bridged.sip_status))
                    if bridged.outcome is Outcome.COMPLETED:
                        return AttemptResult(
                            Outcome.COMPLETED,
                            target,
                            bridged.sip_status,
                            bridged.talk_s,
                            bridged.detail,
                            tuple(rang),
                        )
                    continue
                transfer = await client.call.refer(self.uri_for(target), self.transfer_timeout_s)
                rang.append((target, transfer.status))
                if transfer.kind == "completed":
                    return AttemptResult(
                        Outcome.COMPLETED,
                        target,
                        transfer.status,
                        None,
                        _detail(transfer),
                        tuple(rang),
                    )
            return AttemptResult(
                Outcome.NO_MANAGER, detail="no target took the client", rang=tuple(rang)
            )
        finally:
            await client.hangup()


def _detail(transfer: TransferResult) -> str:
    return f"transfer {transfer.kind}: {transfer.detail}"[:200]


def build_dialler(app: Any) -> SipDialler:
    """The dialler of a running `VoicebotApp`: its user agent, media clock, RTP
    ports and settings; the callback prompts in `ivr.language` (`ivr.prompts_dir`
    overrides them like the menu's)."""
    settings = app.settings
    prompts = PromptLibrary.load(
        settings.ivr.language, DIALLER_PROMPT_NAMES, override_dir=settings.ivr.prompts_dir
    )
    clock = getattr(app, "media_clock", None) or app._media_clock
    ports = getattr(app, "rtp_ports", None) or app._env.ports  # the menu's pool: one RTP range
    return SipDialler(
        app.user_agent,
        clock,
        ports,
        prompts,
        settings.sip,
        ring_timeout_s=getattr(settings.callbacks, "ring_timeout_s", 25.0),
    )
