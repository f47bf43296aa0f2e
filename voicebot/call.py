"""One post-call menu session: wires an answered SIP call, its RTP session,
the pure `ivr.Menu` and the journal.

The menu decides, this module only performs: events from the wire (RFC 4733
or SIP INFO keys, prompt finished, timer, hang-up) go into one queue and are
fed to the menu one at a time; the actions it returns are carried out in
order (a Save is awaited before the HangUp that follows it), so the journal
row is durable before the bot sends BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

import ivr
from voicebot.api.metrics import CallCounters
from voicebot.clock import Clock
from voicebot.journal.store import CallOutcome, CallStart, Journal
from voicebot.logs import get_logger
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import CODECS, Codec
from voicebot.media.prompt_library import PromptLibrary
from voicebot.media.session import RtpPortPool, RtpPortsExhausted, RtpSession
from voicebot.sip.call import CallCancelled, CallEnded, IncomingCall


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """Who and what the call is about, from the PBX's X- headers (DESIGN.md §4)."""

    pbx_call_id: str | None
    client_number: str | None
    manager: str | None

    @classmethod
    def of(cls, call: IncomingCall) -> CallIdentity:
        def clean(value: str | None) -> str | None:
            value = (value or "").strip()
            return value or None

        return cls(
            pbx_call_id=clean(call.header("X-Call-ID")),
            client_number=clean(call.header("X-Client-Number")),
            manager=clean(call.header("X-Manager")) or clean(call.from_user),
        )


@dataclass(frozen=True, slots=True)
class MenuEnvironment:
    """What every call shares: built once at start-up by the app."""

    menu_config: ivr.MenuConfig
    prompts: PromptLibrary
    ports: RtpPortPool
    media_clock: MediaClock
    journal: Journal
    clock: Clock
    counters: CallCounters = field(default_factory=CallCounters)
    # Called with the webhook ids a save enqueued, so the dispatcher wakes at once.
    on_saved: Callable[[list[str]], None] | None = None
    # The category catalogue as it is now, read once per call so an edit made
    # through the API is heard on the next call; None keeps menu_config's.
    categories: Callable[[], Awaitable[Mapping[str, ivr.Category]]] | None = None
    # Called with our call id after every save (the call log files it).
    after_save: Callable[[str], Awaitable[object]] | None = None


class CategorizationCall:
    def __init__(self, call: IncomingCall, env: MenuEnvironment) -> None:
        self._call = call
        self._env = env
        self.call_id = f"call_{uuid.uuid4().hex}"
        self.identity = CallIdentity.of(call)
        self.log = get_logger(
            call_id=self.call_id,
            sip_call_id=call.call_id,
            manager=self.identity.manager,
            pbx_call_id=self.identity.pbx_call_id,
        )
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._menu = ivr.Menu(env.menu_config)
        self._timer: asyncio.TimerHandle | None = None
        self._session: RtpSession | None = None
        self._codec: Codec | None = None
        self._end_reason = "menu_finished"

    async def run(self) -> None:
        await self._load_categories()
        media = self._call.media
        codec = CODECS[media.codec_name]
        self._codec = codec
        try:
            endpoint = await self._env.ports.allocate()
        except RtpPortsExhausted as exc:
            # Another process holds ports of our range: a refusal, not a crash.
            self.log.warning("call.refused", reason="rtp_ports_exhausted", error=str(exc))
            with contextlib.suppress(CallCancelled, CallEnded):
                await self._call.reject(503)
            return
        session = RtpSession(
            endpoint,
            (media.remote_host, media.remote_port),
            codec,
            self._env.media_clock,
            dtmf_payload_type=media.telephone_event_pt,
            on_key=self._rtp_key,
            # NAT: the phone's media may come from its signalling IP, not the SDP address.
            learn_from=(self._call.source[0],),
            logger=self.log,
        )
        self._session = session
        self._call.on_info_key = self._info_key
        try:
            try:
                await self._call.answer(endpoint.host, endpoint.port)
            except CallCancelled:
                self.log.info("call.cancelled_before_answer")
                return
            self._env.counters.answered += 1
            self.log.info(
                "call.answered",
                codec=codec.name,
                client_number=self.identity.client_number,
                rtp_local=session.local_port,
            )
            await self._env.journal.start_call(
                CallStart(
                    call_id=self.call_id,
                    sip_call_id=self._call.call_id,
                    pbx_call_id=self.identity.pbx_call_id,
                    manager=self.identity.manager,
                    client_number=self.identity.client_number,
                    codec=codec.name,
                    started_at=self._env.clock.now(),
                )
            )
            await session.start()
            watcher = asyncio.create_task(self._watch_hangup())
            try:
                await self._drive()
            finally:
                watcher.cancel()
        finally:
            self._cancel_timer()
            await session.close()
            self._env.counters.rtp_malformed += session.stats.malformed
            self._env.counters.rtp_refused += session.stats.refused

    async def _load_categories(self) -> None:
        if self._env.categories is None:
            return
        categories = await self._env.categories()
        if not categories and self._env.menu_config.ask_category:
            # An emptied catalogue must not leave the manager with a menu that
            # cannot run; the start-up list is the better answer.
            self.log.warning("categories.empty")
            return
        self._menu = ivr.Menu(replace(self._env.menu_config, categories=categories))

    # -- events in ---------------------------------------------------------

    def _rtp_key(self, key: str) -> None:
        self._env.counters.keys_rfc4733 += 1
        self._events.put_nowait(ivr.Digit(key))

    def _info_key(self, key: str) -> None:
        self._env.counters.keys_info += 1
        self.log.info("call.info_key", key=key)
        self._events.put_nowait(ivr.Digit(key))

    async def _watch_hangup(self) -> None:
        reason = await asyncio.shield(self._call.ended)
        self._end_reason = reason
        self._events.put_nowait(ivr.Hangup())

    def _prompt_finished(self) -> None:
        self._events.put_nowait(ivr.PromptFinished())

    def _timer_fired(self, token: int) -> None:
        self._timer = None
        self._events.put_nowait(ivr.TimerFired(token))

    # -- the loop ------------------------------------------------------------

    async def _drive(self) -> None:
        event: object = ivr.Start()
        while True:
            for action in self._menu.handle(event):  # type: ignore[arg-type]
                await self._perform(action)
            if self._menu.finished:
                return
            event = await self._events.get()

    async def _perform(self, action: object) -> None:
        session = self._session
        assert session is not None and self._codec is not None
        match action:
            case ivr.Play(prompts=names):
                frames = self._env.prompts.sequence(names, self._codec.name, self._codec.encode)
                session.player.play(frames, on_finished=self._prompt_finished)
            case ivr.StopPlayback():
                session.player.stop()
            case ivr.StartTimer(seconds=seconds, token=token):
                self._cancel_timer()
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(seconds, self._timer_fired, token)
            case ivr.CancelTimer():
                self._cancel_timer()
            case ivr.Save(result=result):
                await self._save(result)
            case ivr.HangUp():
                self._end_reason = "menu_finished"
                await self._call.hangup()
            case _:
                self.log.warning("call.unknown_action", action=repr(action))

    async def _save(self, result: ivr.MenuResult) -> None:
        outcome = CallOutcome(
            status=result.status,
            category_code=result.category.code if result.category else None,
            category_name=result.category.name if result.category else None,
            value=Decimal(result.value) if result.value is not None else None,
            digits=result.digits,
            attempts=result.attempts,
            end_reason=self._end_reason if result.status == "incomplete" else "confirmed",
            ended_at=self._env.clock.now(),
        )
        webhook_ids = await self._env.journal.finish_call(self.call_id, outcome)
        if outcome.status == "confirmed":
            self._env.counters.confirmed += 1
        else:
            self._env.counters.incomplete += 1
        self.log.info(
            "call.saved",
            status=outcome.status,
            category=outcome.category_code,
            value=str(outcome.value) if outcome.value is not None else None,
            digits=outcome.digits,
            webhooks=len(webhook_ids),
        )
        if webhook_ids and self._env.on_saved is not None:
            self._env.on_saved(webhook_ids)
        if self._env.after_save is not None:
            try:
                await self._env.after_save(self.call_id)
            except Exception as exc:
                # The categorization is stored; filing it in the call log can
                # be redone from the journal, so the call goes on.
                self.log.error("call_log.file_failed", error=repr(exc))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
