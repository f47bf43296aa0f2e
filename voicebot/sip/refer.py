"""Call transfer by REFER (RFC 3515) and what the NOTIFYs tell of it.

We send REFER in an answered call (`Refer-To:` where the far end should go);
a 202 (or 200) creates an implicit subscription to the `refer` event
(RFC 3515 §2.4.4, RFC 6665): the far end reports its INVITE to the new
party in NOTIFYs whose body is a `message/sipfrag` (RFC 3420) status line,
`SIP/2.0 180 Ringing` … `SIP/2.0 200 OK`. Each NOTIFY is answered 200; the
one with `Subscription-State: terminated` ends the transfer, and its
status says how it went. Then the caller hangs up its own leg.

The pieces are small on purpose: `parse_sipfrag` reads one status line,
`subscription_state` one header, `transfer_kind` maps a final status to
what the callback policy cares about, and `ReferTransfer` runs one REFER on
a confirmed dialog.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

from voicebot.sip.dialog import Confirmed, Dialog
from voicebot.sip.message import SipRequest
from voicebot.sip.transaction import TransactionTimeout

TransferKind = Literal["completed", "busy", "no_answer", "failed"]

#: `SIP/2.0 200 OK` — the sipfrag's first line (RFC 3420 §2: a start line, maybe headers).
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2})(?: (.*))?$")
_MAX_REASON = 100


@dataclass(frozen=True, slots=True)
class SipFrag:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class TransferResult:
    """How a REFER ended: `kind` for the policy, `status` the SIP status that decided it."""

    kind: TransferKind
    status: int | None
    detail: str


def parse_sipfrag(body: bytes) -> SipFrag | None:
    """The status line of a `message/sipfrag` body; None unless it is a SIP/2.0 status line."""
    first = body[:512].split(b"\n", 1)[0].strip(b"\r ")
    try:
        line = first.decode("ascii")
    except UnicodeDecodeError:
        return None
    match = _STATUS_LINE.match(line)
    if match is None:
        return None
    reason = (match.group(2) or "").strip()[:_MAX_REASON]
    return SipFrag(int(match.group(1)), reason)


def subscription_state(request: SipRequest) -> tuple[str, str | None]:
    """(`active`|`pending`|`terminated`|…, its reason) from Subscription-State (RFC 6665 §8.2.3)."""
    value = request.headers.get("Subscription-State") or ""
    state, *params = (part.strip() for part in value.split(";"))
    reason = None
    for param in params:
        name, _, found = param.partition("=")
        if name.strip().lower() == "reason":
            reason = found.strip() or None
    return state.lower(), reason


def transfer_kind(status: int) -> TransferKind:
    """What a transfer's final status means: 2xx the client answered, 486/600
    busy, 408/480/487 no answer, anything else failed."""
    if 200 <= status < 300:
        return "completed"
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487):
        return "no_answer"
    return "failed"


def is_refer_notify(request: SipRequest) -> bool:
    event = (request.headers.get("Event") or request.headers.get("o") or "").strip().lower()
    return event.split(";", 1)[0].strip() == "refer"


class ReferTransfer:
    """One REFER on a confirmed dialog, followed through its NOTIFYs to a `TransferResult`."""

    def __init__(self, dialog: Dialog, refer_to: str, *, referred_by: str | None = None) -> None:
        self.dialog = dialog
        self.refer_to = refer_to
        self.referred_by = referred_by
        self.frags: list[SipFrag] = []
        loop = asyncio.get_running_loop()
        self._done: asyncio.Future[TransferResult] = loop.create_future()

    def on_notify(self, request: SipRequest) -> int:
        """Each NOTIFY of the subscription: 200, or 489 for another event package."""
        log = self.dialog.log
        if not is_refer_notify(request):
            log.info("sip.notify_refused", status=489, event_package=request.headers.get("Event"))
            return 489  # Bad Event (RFC 6665 §8.3.1)
        frag = parse_sipfrag(request.body) if request.body else None
        state, reason = subscription_state(request)
        if frag is not None:
            self.frags.append(frag)
            log.info("sip.refer_progress", status=frag.status, subscription=state)
        elif request.body:
            log.info("sip.notify_unreadable", body=request.body[:60].decode("ascii", "replace"))
        if state == "terminated":
            self._finish_from_frags(f"subscription terminated ({reason or 'no reason'})")
        return 200

    def _finish_from_frags(self, why: str) -> None:
        if self._done.done():
            return
        final = next((f for f in reversed(self.frags) if f.status >= 200), None)
        if final is None:
            rang = any(f.status in (180, 183) for f in self.frags)
            kind: TransferKind = "no_answer" if rang else "failed"
            status = 408 if rang else None
            self._done.set_result(TransferResult(kind, status, f"{why} without a final status"))
            return
        self._done.set_result(
            TransferResult(
                transfer_kind(final.status), final.status, f"{final.status} {final.reason}"
            )
        )

    async def run(self, timeout_s: float) -> TransferResult:
        """Send the REFER, wait for the final NOTIFY (or the far end's BYE, or
        `timeout_s`), then forget the subscription. Never raises for SIP outcomes."""
        dialog = self.dialog
        if not isinstance(dialog.state, Confirmed):
            return TransferResult("failed", None, "call not up")
        refer = dialog.new_request("REFER")
        refer.headers.add("Refer-To", f"<{self.refer_to}>")
        if self.referred_by:
            refer.headers.add("Referred-By", f"<{self.referred_by}>")
        dialog.on_notify = self.on_notify
        log = dialog.log
        log.info("sip.refer_sent", refer_to=self.refer_to)
        try:
            try:
                response = await asyncio.wait_for(
                    dialog.host.transactions.request(refer, dialog.destination()), timeout_s
                )
            except (TransactionTimeout, TimeoutError):
                return TransferResult("failed", None, "no answer to REFER")
            if response.status >= 300:
                log.info("sip.refer_refused", status=response.status, reason=response.reason)
                return TransferResult(
                    "failed", response.status, f"REFER refused: {response.status} {response.reason}"
                )
            waits: set[asyncio.Future[object]] = {self._done, dialog.ended}  # type: ignore[arg-type]
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if not self._done.done():
                if dialog.ended.done():
                    # The far end hung up on us: what the NOTIFYs said so far decides.
                    self._finish_from_frags(f"call ended ({dialog.ended.result()})")
                else:
                    self._finish_from_frags(f"no final NOTIFY in {timeout_s:g} s")
            result = self._done.result()
            log.info("sip.refer_finished", kind=result.kind, status=result.status)
            return result
        finally:
            dialog.on_notify = None
