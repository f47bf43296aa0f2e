"""Wiring and lifecycle of `voicebot run`: one asyncio process holding the SIP
user agent, the media clock, the journal, the HTTP API and the webhook
dispatcher. Start order is storage first (so no call is answered that could
not be stored; the spool is replayed before anything else), SIP last.

The app owns its calls: the UA hands each incoming call over and keeps no
task for it. Stop order:

1. new INVITEs are refused with 503 + Retry-After;
2. calls in the menu get `ivr.shutdown_grace_s` to finish;
3. the rest are ended: what was keyed is saved as `incomplete`, end reason
   `shutdown`, then BYE;
4. the UA un-registers and closes, then the HTTP API, the dispatcher, and
   the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import signal
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from voicebot.api import callbacks as callbacks_api
from voicebot.api import journal_routes
from voicebot.api.context import JournalApi
from voicebot.api.metrics import (
    CallbackFigures,
    JournalFigures,
    MetricsSources,
    build_registry,
)
from voicebot.api.period import local_midnight
from voicebot.api.request_gate import RequestGate
from voicebot.api.server import METRICS_REFRESH_KEY, build_app
from voicebot.api.worker_pool import WorkerPool
from voicebot.call import CategorizationCall, MenuEnvironment
from voicebot.callbacks.attempt import Dialler
from voicebot.callbacks.config import numbers_from_settings, policy_from_settings
from voicebot.callbacks.intake import CallLogIntake
from voicebot.callbacks.journal_entry import JournalledDialler
from voicebot.callbacks.missed_call import (
    MISSED_CALL_PROMPTS,
    PLAY_SLACK_S,
    MissedCallEnvironment,
    MissedCallLine,
    is_missed_call,
)
from voicebot.callbacks.queue import CallbackQueue
from voicebot.callbacks.scheduler import CallbackScheduler
from voicebot.clock import Clock, SystemClock
from voicebot.counters import CallCounters
from voicebot.journal.call_types import TypeRules
from voicebot.journal.calls import CallLog, StoredCall
from voicebot.journal.categories import CategoryCatalogue
from voicebot.journal.reports import ReportScope, tally
from voicebot.journal.spool import Spool, spool_path
from voicebot.journal.store import Journal
from voicebot.logs import get_logger
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import CODECS
from voicebot.media.inband_receiver import InbandDtmfReceiver
from voicebot.media.prompt_library import PROMPT_NAMES, PromptLibrary
from voicebot.media.session import RtpPortPool
from voicebot.settings import Settings
from voicebot.sip.call import CallCancelled, IncomingCall
from voicebot.sip.user_agent import UserAgent
from voicebot.startup import HTTP_LISTENER, SIP_LISTENER, check_rtp_range
from voicebot.webhook_service import build_dispatcher, endpoints_from_settings


class VoicebotApp:
    def __init__(
        self, settings: Settings, clock: Clock | None = None, dialler: Dialler | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        # The SIP dialler of callbacks (voicebot.callbacks.dialler) unless a
        # test passes its own.
        self._dialler = dialler
        self.callback_queue: CallbackQueue | None = None
        self.callback_scheduler: CallbackScheduler | None = None
        self.log = get_logger()
        self.journal: Journal | None = None
        self.call_log: CallLog | None = None
        self.categories: CategoryCatalogue | None = None
        self.user_agent: UserAgent | None = None
        self._runner: web.AppRunner | None = None
        self._dispatcher: Any = None
        self._media_clock = MediaClock()
        #: Every call's media ticks on this one clock (its skips are on /metrics).
        self.media_clock = self._media_clock
        self._calls: dict[asyncio.Task[None], CategorizationCall] = {}
        # Missed calls over SIP: a few seconds each (a prompt, or a 480).
        self._missed_calls: set[asyncio.Task[None]] = set()
        self._missed_env: MissedCallEnvironment | None = None
        self._spool: Spool | None = None
        self._spool_task: asyncio.Task[None] | None = None
        self._env: MenuEnvironment | None = None
        self.counters = CallCounters()
        self.journal_figures = JournalFigures()
        self.http_port: int | None = None
        http = settings.http
        # With worker processes, the heavy lane runs one request per worker.
        self.request_gate = RequestGate(
            http.api_concurrency, http.api_queue, heavy_concurrency=http.api_workers or None
        )
        #: The processes heavy API reads are computed in (none until the first).
        self.api_workers: WorkerPool | None = None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # Undo quietly: the caller reports why the start failed, in one line.
            await self.stop(quiet=True)
            raise

    async def _start(self) -> None:
        s = self.settings
        # Before anything is opened: without one free RTP port no call has audio.
        free = check_rtp_range(s.sip.bind_host, s.sip.rtp_port_min, s.sip.rtp_port_max)
        if free < s.sip.rtp_ports:
            self.log.warning(
                "rtp_range.partly_taken",
                free=free,
                total=s.sip.rtp_ports,
                range=f"{s.sip.rtp_port_min}-{s.sip.rtp_port_max}",
            )
        prompts = PromptLibrary.load(s.ivr.language, PROMPT_NAMES, override_dir=s.ivr.prompts_dir)
        for codec in CODECS.values():
            # Encode every prompt once per codec now, not on a call's first play.
            for name in PROMPT_NAMES:
                prompts.frames(name, codec.name, codec.encode)
        missed_prompts = PromptLibrary.load(
            s.ivr.language, MISSED_CALL_PROMPTS, override_dir=s.ivr.prompts_dir
        )
        for codec in CODECS.values():
            for name in MISSED_CALL_PROMPTS:
                missed_prompts.frames(name, codec.name, codec.encode)
        self.journal = await Journal.open(
            s.storage.database,
            endpoints_from_settings(s.webhooks),
            write_deadline_s=s.storage.write_deadline_s,
        )
        self.call_log = await CallLog.open(
            s.storage.database,
            TypeRules.from_settings(s.journal.unique_window_days, s.journal.target_min_talk_s),
            self.clock,
            # The API's reads on a connection (and thread) of their own: a long
            # report never queues the log's writes nor outruns the media clock.
            separate_reader=True,
            # Its writes go in the journal's batches: one writer for the file.
            writes=self.journal.group_commit,
        )
        self._spool = Spool(spool_path(s.storage.database, s.storage.spool_dir))
        # Before recovery: a spooled call finishes its row instead of being
        # marked interrupted.
        await self._replay_spool()
        recovered = await self.journal.recover_interrupted(self.clock.now())
        if recovered:
            self.log.warning("journal.recovered_interrupted_calls", count=recovered)
        self.categories = CategoryCatalogue(
            self.call_log.connection,
            self.call_log.write_lock,
            self.clock,
            keep_one=s.ivr.ask_category,
        )
        seeded = await self.categories.seed(s.categories)
        if seeded:
            self.log.info("categories.seeded", count=seeded)
        # Its writes go in the journal's batches too: one writer for the file.
        self._dispatcher = build_dispatcher(s, self.clock, writes=self.journal.group_commit)
        await self._dispatcher.start()
        dispatcher = self._dispatcher
        # A confirmed save's webhook is claimed in the save's transaction and
        # POSTed as soon as it commits (no claim statement in between).
        self.journal.deliver_with(dispatcher.deliver_claimed)
        self.callback_queue = await CallbackQueue.open(
            s.storage.database,
            numbers_from_settings(s.callbacks),
            policy_from_settings(s.callbacks),
            targets=s.callbacks.targets,
            order=s.callbacks.order,
            endpoints=endpoints_from_settings(s.webhooks),
            clock=self.clock,
            lease_s=s.callbacks.lease_s,
            on_webhook=dispatcher.notify,
        )
        self.call_log.subscribe(
            CallLogIntake(
                self.callback_queue,
                min_ring_s=s.callbacks.min_ring_s,
                enabled=s.callbacks.enabled,
            )
        )
        self._spool_task = asyncio.create_task(self._replay_spool_forever(), name="spool-replay")
        ports = RtpPortPool(s.sip.bind_host, s.sip.rtp_port_min, s.sip.rtp_port_max)
        self._env = MenuEnvironment(
            menu_config=s.menu_config(),
            prompts=prompts,
            ports=ports,
            media_clock=self._media_clock,
            journal=self.journal,
            clock=self.clock,
            counters=self.counters,
            # Handed to the dispatcher claimed already (deliver_with), else a pass sends them.
            on_saved=self._notify_unless_delivered,
            categories=self.categories.menu_categories,
            after_save=self.call_log.record_categorization,
            spool=self._spool,
            inband=InbandDtmfReceiver(self._media_clock),
            inband_mode=s.ivr.inband_dtmf,
        )
        self._missed_env = MissedCallEnvironment(
            call_log=self.call_log,
            prompts=missed_prompts,
            ports=ports,
            media_clock=self._media_clock,
            clock=self.clock,
            on_missed_call=s.callbacks.on_missed_call,
        )
        figures = CallbackFigures()
        registry = build_registry(
            MetricsSources(
                calls=self.counters,
                active_calls=lambda: len(self._calls),
                registered=self._registered,
                webhooks=lambda: self._dispatcher.metrics.as_dict() if self._dispatcher else {},
                callbacks=figures,
                media_clock_skips=lambda: self._media_clock.skipped_ticks,
                api_refused=lambda: self.request_gate.refused,
                sip_refusals=lambda: self.user_agent.counters.as_dict() if self.user_agent else {},
                journal=self.journal_figures,
            )
        )
        self.call_log.subscribe(self._count_recorded)
        api = build_app(
            self.journal,
            self.health,
            s.http.api_token.get_secret_value() if s.http.api_token else None,
            registry,
            self.request_gate,
        )
        if s.http.api_workers:
            self.api_workers = WorkerPool(
                s.storage.database,
                self.call_log.rules,
                s.http.api_workers,
                log_level=s.log.level,
                log_format=s.log.format,
            )
        journal_routes.install(
            api,
            JournalApi(
                call_log=self.call_log,
                catalogue=self.categories,
                zone=ZoneInfo(s.journal.timezone),
                clock=self.clock,
                health=self.health,
                api_token=s.http.api_token.get_secret_value() if s.http.api_token else None,
                language=s.ivr.language,
                workers=self.api_workers,
            ),
        )
        callbacks_api.register(
            api,
            callbacks_api.CallbacksApi(
                self.callback_queue, s.callbacks.enabled, ZoneInfo(s.callbacks.timezone)
            ),
        )
        queue = self.callback_queue

        async def refresh_callback_figures() -> None:
            figures.jobs_by_state, figures.attempts_by_outcome = await queue.counts()

        api[METRICS_REFRESH_KEY] = [refresh_callback_figures, self._refresh_journal_figures]
        self._runner = web.AppRunner(api, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.http.host, s.http.port)
        await HTTP_LISTENER.start(site.start(), s.http.host, s.http.port)
        self.http_port = self._runner.addresses[0][1]
        # Everything long-lived exists now: move it out of the collector's sight,
        # so full collections stay short and do not stall 20 ms media ticks.
        gc.freeze()
        self.user_agent = UserAgent(s.sip, self._on_incoming_call, clock=self.clock)
        await SIP_LISTENER.start(self.user_agent.start(), s.sip.bind_host, s.sip.bind_port)
        if s.callbacks.enabled:
            await self._start_callbacks()
        self.log.info(
            "voicebot.started",
            sip=f"{self.user_agent.local_address[0]}:{self.user_agent.local_address[1]}",
            mode=s.sip.mode,
            http=f"{s.http.host}:{self.http_port}",
            database=str(s.storage.database),
            language=s.ivr.language,
            event_loop=_event_loop_name(),
        )

    async def _start_callbacks(self) -> None:
        s = self.settings.callbacks
        assert self.callback_queue is not None
        dialler = self._dialler or self._sip_dialler()
        if dialler is None:
            return  # said why; jobs queue, nobody dials them
        assert self.call_log is not None
        self.callback_scheduler = CallbackScheduler(
            self.callback_queue,
            # Every attempt is also a call of type "callback" in the journal.
            JournalledDialler(dialler, self.call_log, self.clock),
            max_concurrent_calls=s.max_concurrent_calls,
            order=s.order,
            transfer=s.transfer,
            ring_strategy=s.ring_strategy,
        )
        await self.callback_scheduler.start()

    def _sip_dialler(self) -> Dialler | None:
        """The SIP dialler (voicebot/callbacks/dialler.py), built on this app's
        user agent, media clock and RTP ports; None (and one error line naming
        the setting) when the settings do not say where to dial."""
        from voicebot.callbacks.dialler import DiallerUnavailable, build_dialler

        try:
            return build_dialler(self)
        except DiallerUnavailable as why:
            self.log.error("callback.dialler_unavailable", reason=str(why))
            return None

    async def _count_recorded(self, stored: StoredCall) -> None:
        if stored.created:
            key = (stored.call.source, stored.call.status)
            self.journal_figures.recorded[key] = self.journal_figures.recorded.get(key, 0) + 1

    def _notify_unless_delivered(self, webhook_ids: list[str]) -> None:
        if self._dispatcher is not None and not (self.journal and self.journal.delivers):
            self._dispatcher.notify()

    async def _refresh_journal_figures(self) -> None:
        """Today's calls by status and type, for the next /metrics answer: one
        local day, read through the report indexes, so a scrape stays cheap."""
        if self.call_log is None:
            return
        zone = ZoneInfo(self.settings.journal.timezone)
        today = self.clock.now().astimezone(zone).date()
        scope = ReportScope(
            local_midnight(today, zone),
            local_midnight(today + timedelta(days=1), zone),
            zone,
            self.call_log.rules,
        )
        self.journal_figures.today = await tally(self.call_log.reader, scope)

    def _registered(self) -> bool | None:
        registration = self.user_agent.registration if self.user_agent else None
        if registration is None:
            return None
        return registration.effective_state(self.clock.now()) == "registered"

    def health(self) -> dict[str, Any]:
        registration = self.user_agent.registration if self.user_agent else None
        sip: dict[str, Any] = {"mode": self.settings.sip.mode}
        ok = self.user_agent is not None
        if registration is not None:
            expires_at = registration.expires_at
            state = registration.effective_state(self.clock.now())
            sip["registration"] = {
                "state": state,
                "last_error": registration.last_error,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "registrar": "{}:{}".format(*registration.registrar_address)
                if registration.registrar_address
                else None,
            }
            ok = ok and state == "registered"
        return {
            "ok": ok,
            "sip": sip,
            "active_calls": len(self._calls),
            "event_loop": _event_loop_name(),
        }

    async def _replay_spool(self) -> None:
        if self._spool is None or self.journal is None:
            return
        for start, outcome, webhook_ids in await self._spool.replay(self.journal):
            self.log.info(
                "call.saved",
                call_id=start.call_id,
                sip_call_id=start.sip_call_id,
                status=outcome.status,
                digits=outcome.digits,
                end_reason=outcome.end_reason,
                webhook_ids=webhook_ids,
                source="spool",
            )
            if webhook_ids and self._dispatcher is not None:
                self._dispatcher.notify()
            if self.call_log is not None:
                try:
                    await self.call_log.record_categorization(start.call_id)
                except Exception as error:
                    self.log.error("call_log.file_failed", call_id=start.call_id, error=repr(error))

    async def _replay_spool_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.storage.spool_replay_interval_s)
            try:
                await self._replay_spool()
            except Exception as error:
                self.log.error("spool.replay_failed", error=repr(error))

    def _on_incoming_call(self, call: IncomingCall) -> None:
        """The UA hands a call over; from here on the app owns it."""
        assert self._env is not None
        if self._missed_env is not None and is_missed_call(
            call, self.settings.callbacks.missed_uri_users
        ):
            line = MissedCallLine(call, self._missed_env)
            missed = asyncio.get_running_loop().create_task(
                self._run_missed_call(line, call), name=f"missed-{call.call_id}"
            )
            self._missed_calls.add(missed)
            missed.add_done_callback(self._missed_calls.discard)
            return
        session = CategorizationCall(call, self._env)
        task = asyncio.get_running_loop().create_task(
            self._run_call(session, call), name=f"call-{session.call_id}"
        )
        self._calls[task] = session
        task.add_done_callback(lambda done: self._calls.pop(done, None))

    async def _run_call(self, session: CategorizationCall, call: IncomingCall) -> None:
        try:
            await session.run()
        except CallCancelled:
            session.log.info("call.cancelled_before_answer")
        except Exception:
            self.counters.failed += 1
            session.log.exception("call.failed")
            with contextlib.suppress(Exception):
                await call.hangup()

    async def _run_missed_call(self, line: MissedCallLine, call: IncomingCall) -> None:
        try:
            await line.run()
        except Exception:
            line.log.exception("call.failed")
            with contextlib.suppress(Exception):
                await call.hangup()

    async def _end_calls(self) -> None:
        """Steps 2 and 3 of the stop: grace for the menus, then end the rest."""
        if not self._calls:
            return
        grace = self.settings.ivr.shutdown_grace_s
        self.log.info("voicebot.draining", active_calls=len(self._calls), grace_s=grace)
        _, running = await asyncio.wait(set(self._calls), timeout=grace)
        if not running:
            return
        self.log.warning("voicebot.ending_calls", active_calls=len(running))
        for task in running:
            session = self._calls.get(task)
            if session is not None:
                session.shutdown()
        # Each saves (bounded by the journal's deadline, then the spool) and sends BYE.
        deadline = self.settings.storage.write_deadline_s + 5
        _, stuck = await asyncio.wait(running, timeout=deadline)
        for task in stuck:
            task.cancel()
        if stuck:
            self.log.error("voicebot.calls_cancelled", count=len(stuck))
            await asyncio.wait(stuck)

    async def stop(self, *, quiet: bool = False) -> None:
        """Idempotent; also undoes a start that failed half-way (`quiet`: no log)."""
        if not quiet:
            self.log.info("voicebot.stopping", active_calls=len(self._calls))
        if self.user_agent is not None:
            retry_after = math.ceil(self.settings.ivr.shutdown_grace_s) + 10
            self.user_agent.refuse_new_calls(retry_after)
        if self.callback_scheduler is not None:
            await self.callback_scheduler.stop(grace_s=self.settings.ivr.shutdown_grace_s)
            self.callback_scheduler = None
        await self._end_calls()
        if self._missed_calls:
            await asyncio.wait(set(self._missed_calls), timeout=PLAY_SLACK_S * 3)
        if self.user_agent is not None:
            # Un-registers and closes the socket (BYE for anything still up).
            await self.user_agent.stop()
            self.user_agent = None
        if self._spool_task is not None:
            self._spool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._spool_task
            self._spool_task = None
        if self.api_workers is not None:
            # First: a request in flight gets CLOSE_GRACE_S for its answer,
            # then 503, instead of holding the HTTP server's shutdown.
            await self.api_workers.close()
            self.api_workers = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._media_clock.stop()
        if self._dispatcher is not None:
            if self.journal is not None:
                self.journal.deliver_with(None)  # saves from here on: pending, for the next start
            await self._dispatcher.stop()
            self._dispatcher = None
        if self.callback_queue is not None:
            await self.callback_queue.close()
            self.callback_queue = None
        if self.call_log is not None:
            await self.call_log.close()
            self.call_log = None
            self.categories = None
        if self.journal is not None:
            await self.journal.close()
            self.journal = None
        if not quiet:
            self.log.info("voicebot.stopped")


def _event_loop_name() -> str:
    """`uvloop` or `asyncio`: which loop `voicebot run --loop` gave us (for /healthz)."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


async def serve(settings: Settings) -> None:
    app = VoicebotApp(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()
