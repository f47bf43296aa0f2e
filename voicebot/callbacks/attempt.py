"""The seam between the callback queue and the dialler.

The scheduler claims a due job, builds an `AttemptRequest` and awaits
`Dialler.attempt()`; the dialler rings the targets, whispers to the manager,
reads the key and connects (REFER or bridge), then returns one
`AttemptResult`. The scheduler alone turns that outcome into the job's next
state (policy); the dialler never touches the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    """How one attempt ended, as the policy needs to know it."""

    #: The manager pressed 1 and the client answered (REFER sipfrag 2xx, or bridged).
    COMPLETED = "completed"
    #: The manager pressed 2: call later.
    MANAGER_LATER = "manager_later"
    #: The manager pressed 3: no callback is needed.
    NOT_NEEDED = "not_needed"
    #: The manager answered but keyed nothing before the timeout.
    NO_KEY = "no_key"
    #: No target answered (all rang out, busy or refused).
    NO_MANAGER = "no_manager"
    #: The client was busy (486/600, or sipfrag 486/600).
    CLIENT_BUSY = "client_busy"
    #: The client did not answer (408/480/487, ring timeout).
    CLIENT_NO_ANSWER = "client_no_answer"
    #: Anything else: SIP error, transfer refused, media failure.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AttemptRequest:
    job_id: int
    #: 1 for the first attempt.
    attempt: int
    #: The client's number as stored (E.164, or verbatim for an allowed internal number).
    client_number: str
    #: The request-URI user part that reaches the client (`callbacks.dial_template` applied).
    client_dial: str
    #: When the (latest) missed call happened; the whisper says how long ago.
    missed_at: datetime
    #: Extensions to ring, in order (`ring_strategy = "sequential"`) or all at once ("parallel").
    targets: tuple[str, ...]
    order: str = "manager_first"  # or "client_first"
    transfer: str = "refer"  # or "bridge"
    ring_strategy: str = "sequential"  # or "parallel"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    #: The extension that answered, if one did.
    target: str | None = None
    #: The SIP status that decided the outcome (e.g. 486 from sipfrag), if any.
    sip_status: int | None = None
    #: Seconds the manager and client talked (bridge mode; REFER: None).
    talk_s: float | None = None
    #: One line for the journal and the log.
    detail: str = ""
    #: Per-target ring results, for the attempt record: (target, sip_status or None).
    rang: tuple[tuple[str, int | None], ...] = field(default_factory=tuple)


class Dialler(Protocol):
    async def attempt(self, request: AttemptRequest) -> AttemptResult:
        """Place one attempt end to end; never raises for call outcomes."""
        ...
