"""One post-call menu session: wires an answered SIP call, its RTP session,
the pure `ivr.Menu` and the journal.

The menu decides, this module only performs: events from the wire (RFC 4733
or SIP INFO keys, prompt finished, timer, hang-up) go into one queue and are
fed to the menu one at a time; the actions it returns are carried out in
order.

A `Save` is answered with `Saved()` only once the entry is durable: committed
to the journal (retried with backoff while the manager hears a hold tone), or,
if the database stays unavailable past its deadline, appended to the fsync'd
spool that is replayed into the journal later. Only then does the menu say
"saved". `SaveFailed()` (neither would take it) makes it say "not_saved".

The `in_progress` row written at answer time is best effort and never holds
the call up: a locked database only delays it, and the final save creates
the row if it never came.

`shutdown()` (the app stopping) ends the menu where it is: what was keyed is
saved as `incomplete`, end reason `shutdown`, then the bot sends BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

import ivr
from voicebot.clock import Clock
from voicebot.counters import CallCounters
from voicebot.journal.spool import Spool
from voicebot.journal.store import CallOutcome, CallStart, Journal, JournalUnavailable
from voicebot.logs import get_logger
from voicebot.media.clock import MediaClock
from voicebot.media.dual_mode_keys import DualModeKeys
from voicebot.media.g711 import CODECS, Codec
from voicebot.media.inband_receiver import InbandChannel, InbandDtmfReceiver
from voicebot.media.prompt_library import PromptLibrary
from voicebot.media.session import RtpPortPool, RtpPortsExhausted, RtpSession
from voicebot.media.tone import hold_tone_frames
from voicebot.sip.call import CallCancelled, CallEnded, IncomingCall
from voicebot.sip.media_session import call_rtp_session

#: The answer-time row may hold the database this long; the call goes on regardless.
START_ROW_DEADLINE_S = 1.0
#: A save faster than this is not worth a hold tone.
HOLD_TONE_AFTER_S = 0.3
SHUTDOWN = "shutdown"


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
    # Where a finished call goes when the journal stays unavailable.
    spool: Spool | None = None
    # In-band DTMF (keys as tones): the shared detector and `ivr.inband_dtmf`.
    inband: InbandDtmfReceiver | None = None
    inband_mode: str = "off"


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
        self._inband: InbandChannel | None = None
        self._keys = DualModeKeys()
        self._codec: Codec | None = None
        self._end_reason = "menu_finished"
        self._start: CallStart | None = None
        self._start_row: asyncio.Task[None] | None = None
        self._shutting_down = False

    def shutdown(self) -> None:
        """End the menu now (the app is stopping): save what was keyed as
        `incomplete` / `shutdown`, then hang up with BYE."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self._end_reason = SHUTDOWN
        self._events.put_nowait(ivr.Hangup())

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
        session = call_rtp_session(
            endpoint,
            media,
            self._env.media_clock,
            on_key=self._rtp_key,
            learn_from=self._call.source[0],
            logger=self.log,
        )
        self._session = session
        self._call.on_info_key = self._info_key
        if self._env.inband is not None and self._env.inband_mode in ("auto", "on"):
            self._inband = self._env.inband.open(self._inband_key, codec)
            session.on_payload = self._inband.feed_g711
        try:
            try:
                # Nothing may reach the port before our answer names it; a phone
                # sends audio once it has our 200, before its ACK reaches us, so
                # what arrives from here on is the call's (the manager may key at
                # once; under load the ACK waits its turn: 2 of 500 first keys
                # were lost when the media start dropped it, bench/README.md).
                endpoint.discard_queued()
                await self._call.answer(endpoint.host, endpoint.port)
            except CallCancelled:
                self.log.info("call.cancelled_before_answer")
                return
            except CallEnded as ended:
                # No ACK for our 200 (a flood, a caller gone) or a BYE first: an
                # expected end, one line, and the RTP port goes back to the pool.
                self.log.warning("call.unconfirmed", reason=ended.reason)
                return
            self._env.counters.answered += 1
            self.log.info(
                "call.answered",
                codec=codec.name,
                client_number=self.identity.client_number,
                rtp_local=session.local_port,
            )
            self._start = CallStart(
                call_id=self.call_id,
                sip_call_id=self._call.call_id,
                pbx_call_id=self.identity.pbx_call_id,
                manager=self.identity.manager,
                client_number=self.identity.client_number,
                codec=codec.name,
                started_at=self._env.clock.now(),
            )
            self._start_row = asyncio.create_task(self._write_start_row(self._start))
            await session.start(keep_queued=True)
            watcher = asyncio.create_task(self._watch_hangup())
            try:
                await self._drive()
            finally:
                watcher.cancel()
            if self._shutting_down:
                await self._call.hangup()
        finally:
            self._cancel_timer()
            if self._start_row is not None:
                await self._start_row
            self._stop_inband()
            await session.close()
            self._env.counters.rtp_malformed += session.stats.malformed
            self._env.counters.rtp_refused += session.stats.refused
            self._let_go()

    def _let_go(self) -> None:
        """The call is over: drop what points back at it (its handlers, held by
        the SIP call and the RTP session), so its objects are freed as it ends,
        not by a full garbage collection pass (bench/README.md: 73 objects a
        call, and full passes of 30-108 ms under churn)."""
        self._call.on_info_key = None
        if self._session is not None:
            self._session.on_key = None

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

    async def _write_start_row(self, start: CallStart) -> None:
        try:
            await self._env.journal.start_call(start, deadline_s=START_ROW_DEADLINE_S)
        except JournalUnavailable as error:
            # The final save carries the start too and creates the row then.
            self.log.warning("journal.start_deferred", problem=str(error))
        except Exception as error:
            self.log.error("journal.start_failed", error=repr(error))

    # -- events in ---------------------------------------------------------

    def _rtp_key(self, key: str) -> None:
        if self._inband is not None and self._env.inband_mode == "auto":
            # The phone sends RFC 4733: tones in its audio are not needed from now on.
            self.log.info("inband_dtmf.stopped", reason="rfc4733_seen")
            self._stop_inband()
        if self._is_second_copy("rfc4733", key):
            return
        self._env.counters.keys_rfc4733 += 1
        self._events.put_nowait(ivr.Digit(key))

    def _inband_key(self, key: str) -> None:
        if self._is_second_copy("inband", key):
            return
        self._env.counters.keys_inband += 1
        self.log.info("inband_dtmf.key_received", key=key)
        self._events.put_nowait(ivr.Digit(key))

    def _is_second_copy(self, source: str, key: str) -> bool:
        """A dual-mode phone's other copy of a press already counted (see DualModeKeys)."""
        if self._keys.accept(source, key, asyncio.get_running_loop().time()):
            return False
        self.log.info("dtmf.duplicate_dropped", key=key, source=source)
        return True

    def _stop_inband(self) -> None:
        channel, self._inband = self._inband, None
        if channel is not None:
            channel.close()
            if channel.dropped_bytes:
                # The phone sent audio faster than real time (a flood): keys in it may be lost.
                self.log.warning("inband_dtmf.audio_dropped", frames=channel.dropped_frames)
            if self._session is not None:
                self._session.on_payload = None

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
                stored = await self._save_holding(result)
                if not self._menu.finished:
                    self._events.put_nowait(ivr.Saved() if stored else ivr.SaveFailed())
            case ivr.HangUp():
                self._end_reason = "menu_finished"
                await self._call.hangup()
            case _:
                self.log.warning("call.unknown_action", action=repr(action))

    async def _save_holding(self, result: ivr.MenuResult) -> bool:
        """Save; if that takes a while, the manager hears the hold tone meanwhile."""
        saving = asyncio.create_task(self._save(result))
        done, _ = await asyncio.wait({saving}, timeout=HOLD_TONE_AFTER_S)
        if not done and self._session is not None and self._codec is not None:
            codec = self._codec
            seconds = self._env.journal.write_deadline_s + 5
            self._session.player.play(hold_tone_frames(codec.name, codec.encode, seconds))
            self.log.info("call.holding", reason="journal write pending")
        return await saving

    async def _save(self, result: ivr.MenuResult) -> bool:
        """Make the outcome durable: the journal, else the spool. True if either took it."""
        assert self._start is not None
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
        details = {
            "status": outcome.status,
            "category": outcome.category_code,
            "value": str(outcome.value) if outcome.value is not None else None,
            "digits": outcome.digits,
            "end_reason": outcome.end_reason,
        }
        if self._start_row is not None:
            # Never race the answer-time INSERT (it is bounded by its own deadline).
            await self._start_row
        try:
            webhook_ids = await self._env.journal.finish_call(self._start, outcome)
        except JournalUnavailable as error:
            return await self._spool(outcome, str(error), details)
        except Exception as error:
            self.log.error("call.save_failed", error=repr(error), **details)
            return await self._spool(outcome, repr(error), details)
        self._count(outcome)
        self.log.info("call.saved", webhook_ids=webhook_ids, **details)
        if webhook_ids and self._env.on_saved is not None:
            self._env.on_saved(webhook_ids)
        await self._after_save()
        return True

    async def _after_save(self) -> None:
        if self._env.after_save is None:
            return
        try:
            await self._env.after_save(self.call_id)
        except Exception as exc:
            # The categorization is stored; filing it in the call log can
            # be redone from the journal, so the call goes on.
            self.log.error("call_log.file_failed", error=repr(exc))

    async def _spool(
        self, outcome: CallOutcome, problem: str, details: Mapping[str, object]
    ) -> bool:
        assert self._start is not None
        spool = self._env.spool
        if spool is None:
            self.log.error("call.save_failed", problem=problem, **details)
            return False
        try:
            await spool.append(self._start, outcome)
        except OSError as error:
            self.log.error(
                "call.save_failed",
                problem=problem,
                spool=str(spool.path),
                spool_error=str(error),
                **details,
            )
            return False
        self._count(outcome)
        self.log.warning("call.spooled", problem=problem, spool=str(spool.path), **details)
        return True

    def _count(self, outcome: CallOutcome) -> None:
        if outcome.status == "confirmed":
            self._env.counters.confirmed += 1
        else:
            self._env.counters.incomplete += 1

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
