"""Missed and answered calls from the call log into the callback queue.

The call log (voicebot/journal/calls.py) stores every call first, from any
source: `POST /api/v1/calls/events`, a CDR import, a missed-call INVITE, the
menu. This listener then decides what the call means for callbacks:

- a missed inbound call whose ring lasted at least `min_ring_s` (when the
  event carries the times) is queued (`CallbackQueue.missed_call`);
- an answered call with the client, in either direction (the client got
  through, or a manager called them), cancels the client's open job.

The same event sent twice does nothing the second time (the queue lists a
missed call once).
"""

from __future__ import annotations

from datetime import UTC, datetime

from voicebot.callbacks.queue import CallbackQueue
from voicebot.journal.calls import StoredCall
from voicebot.logs import get_logger


class CallLogIntake:
    def __init__(self, queue: CallbackQueue, *, min_ring_s: float, enabled: bool = True) -> None:
        self.queue = queue
        self.min_ring_s = min_ring_s
        self.enabled = enabled
        self._log = get_logger()

    async def __call__(self, stored: StoredCall) -> None:
        if not self.enabled or not stored.changed:
            return
        call = stored.call
        if call.source == "callback" or call.is_callback:
            # The bot's own calls neither queue nor cancel.
            return
        try:
            if call.status == "missed" and call.direction == "inbound":
                await self._missed(stored)
            elif call.status == "answered" and call.client_number:
                await self.queue.answered_call(
                    call.caller if call.direction == "inbound" else call.client_number,
                    at=datetime.fromtimestamp(call.started_at, UTC),
                    reason="answered" if call.direction != "outbound" else "manager_called",
                )
        except Exception as error:
            # The call is stored; the queue's trouble must not fail the intake.
            self._log.error("callback.intake_failed", id=call.id, error=repr(error))

    async def _missed(self, stored: StoredCall) -> None:
        call = stored.call
        if call.wait_s is not None and call.wait_s < self.min_ring_s:
            self._log.info(
                "callback.ignored",
                id=call.id,
                pbx_call_id=call.pbx_call_id,
                reason="short_ring",
                wait_s=call.wait_s,
                min_ring_s=self.min_ring_s,
            )
            return
        await self.queue.missed_call(
            call.caller or call.client_number,
            missed_at=datetime.fromtimestamp(call.started_at, UTC),
            source="pbx",
            call_id=call.id,
            pbx_call_id=call.pbx_call_id,
        )
