"""Every callback attempt the bot places becomes a call in the call log.

The dialler (the SIP edge) knows nothing of the journal and the queue
records attempts in its own tables; this wrapper sits on the seam between
them (`voicebot.callbacks.attempt.Dialler`): it times each attempt, lets the
real dialler place it, and files one outbound call of type *callback*
(`source = 'callback'`, `is_callback`) with the manager who took it. The
journal then counts it like any call: an answered callback is the answered
call that makes an earlier missed call no longer *unprocessed*.

The client's number is the one the journal holds for the missed calls the
job answers, so the answered callback meets them under one number.

Status of the filed call, as the client lived it:
- completed (the client answered and was connected) -> answered;
- client_busy -> busy; client_no_answer -> missed (an outbound miss: not of
  type *missed*, which is for clients who called in);
- anything that never reached the client (no manager, the manager's key,
  a SIP failure) -> failed.
"""

from __future__ import annotations

from datetime import timedelta

from voicebot.callbacks.attempt import AttemptRequest, AttemptResult, Dialler, Outcome
from voicebot.clock import Clock
from voicebot.journal.call_events import CallEvent, CallStatus
from voicebot.journal.calls import CallLog
from voicebot.logs import get_logger

_STATUS: dict[Outcome, CallStatus] = {
    Outcome.COMPLETED: "answered",
    Outcome.CLIENT_BUSY: "busy",
    Outcome.CLIENT_NO_ANSWER: "missed",
}


class JournalledDialler:
    """A `Dialler` that files each attempt in the call log after placing it."""

    def __init__(self, dialler: Dialler, call_log: CallLog, clock: Clock) -> None:
        self.dialler = dialler
        self.call_log = call_log
        self.clock = clock
        self._log = get_logger()

    async def attempt(self, request: AttemptRequest) -> AttemptResult:
        started = self.clock.now()
        result = await self.dialler.attempt(request)
        ended = max(self.clock.now(), started)
        status = _STATUS.get(result.outcome, "failed")
        answered = None
        if status == "answered":
            # The dialler's talk time is the truth (bridge mode measures it);
            # the clock only places it, ending when the attempt came back.
            talk = timedelta(seconds=result.talk_s or 0.0)
            answered = max(started, ended - talk)
            ended = answered + talk
        ms = int(started.timestamp() * 1000)
        try:
            event = CallEvent(
                call_id=f"callback-{request.job_id}-{request.attempt}-{ms}",
                direction="outbound",
                caller=result.target or (request.targets[0] if request.targets else None),
                callee=await self._client_as_journalled(request),
                status=status,
                started_at=started,
                answered_at=answered,
                ended_at=ended,
                manager=result.target,
                callback=True,
            )
            await self.call_log.record_call_event(event, source="callback")
        except Exception as error:
            # The attempt happened; the queue must still hear its outcome.
            self._log.error(
                "callback.journal_failed",
                callback_id=request.job_id,
                attempt=request.attempt,
                error=repr(error),
            )
        return result

    async def _client_as_journalled(self, request: AttemptRequest) -> str:
        """The client's number as the journal wrote it on the missed call the
        job answers (a PBX may send 0441234567 where the queue dials E.164), so
        the callback and the miss are one client's calls; else the queue's."""
        # One trip to the connection's thread (execute, fetch, close): no
        # statement stays open across an await for another task's BEGIN to meet.
        rows = list(
            await self.call_log.connection.execute_fetchall(
                "SELECT c.client_number FROM callback_missed_calls m"
                " JOIN calls c ON c.id = m.call_id"
                " WHERE m.job_id = ? AND c.client_number IS NOT NULL"
                " ORDER BY m.missed_at DESC LIMIT 1",
                (request.job_id,),
            )
        )
        return str(rows[0][0]) if rows else request.client_number
