"""A PBX call event: what `POST /api/v1/calls/events`, `voicebot import-cdr`
and the callbacks intake hand to `CallLog.record_call_event` (issue 9 item 1).

Everything here came over the network or from a file someone else wrote, so
the model is strict about what it keeps (bounded strings, zone-aware times in
order) and a refusal names the field. Unknown fields are ignored: PBX
webhooks carry more than we need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)


def _not_a_number(value: object) -> object:
    # pydantic would read 0 or 1.7e9 as Unix time; the document says a
    # date-time string, and a PBX sending a number means its format is wrong.
    if isinstance(value, int | float):
        raise ValueError("expected an ISO 8601 date-time with a zone, e.g. 2026-10-25T08:00:00Z")
    return value


# A moment with its zone (ISO 8601 text over HTTP; datetimes from the CDR reader).
EventTime = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]

Direction = Literal["inbound", "outbound", "internal"]
CallStatus = Literal["answered", "missed", "busy", "failed"]

# A number or an extension as a PBX writes it: digits, `+`, separators, and
# the odd SIP user name ("anonymous", "201-office").
PhoneText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w+*#.\-() @]+$"
    ),
]
CallIdText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"
    ),
]


class CallEvent(BaseModel):
    """One finished call as the PBX saw it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    call_id: CallIdText = Field(
        description="the PBX's id of the call; re-sending it updates the call"
    )
    direction: Direction
    caller: PhoneText | None = None
    callee: PhoneText | None = None
    status: CallStatus
    started_at: EventTime
    answered_at: EventTime | None = None
    ended_at: EventTime | None = None
    manager: PhoneText | None = Field(None, description="extension or login of the manager")
    callback: StrictBool = Field(
        False, description="placed by the bot or asked for by a callback widget"
    )

    @model_validator(mode="after")
    def _times_in_order(self) -> CallEvent:
        # Compared as timestamps: same-zone datetimes compare as wall clocks.
        started = self.started_at.timestamp()
        answered = self.answered_at.timestamp() if self.answered_at is not None else None
        if answered is not None:
            if self.status != "answered":
                raise ValueError("answered_at: only an answered call has an answer time")
            if answered < started:
                raise ValueError("answered_at: must not be before started_at")
        if self.ended_at is not None:
            ended = self.ended_at.timestamp()
            if ended < started:
                raise ValueError("ended_at: must not be before started_at")
            if answered is not None and ended < answered:
                raise ValueError("ended_at: must not be before answered_at")
        return self

    @property
    def client_number(self) -> str | None:
        """The client's side of the call: who called in, or whom we called."""
        if self.direction == "inbound":
            return normalise_number(self.caller)
        if self.direction == "outbound":
            return normalise_number(self.callee)
        return None

    @property
    def company_number(self) -> str | None:
        if self.direction == "inbound":
            return normalise_number(self.callee)
        if self.direction == "outbound":
            return normalise_number(self.caller)
        return None

    def wait_s(self) -> float | None:
        """Ringing time: until answer, or until the caller gave up."""
        end = self.answered_at if self.status == "answered" else self.ended_at
        return _seconds(self.started_at, end)

    def talk_s(self) -> float | None:
        if self.status != "answered":
            return 0.0
        return _seconds(self.answered_at, self.ended_at)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    # Through timestamps: two datetimes sharing one ZoneInfo subtract as wall
    # clocks, which is an hour off across a DST change.
    return round(end.timestamp() - start.timestamp(), 3)


_SEPARATORS = str.maketrans("", "", " -().")


def normalise_number(number: str | None) -> str | None:
    """The number with the separators people type removed, so `+38 (044) 123`
    and `+38044123` are one client. E.164 normalisation per region is the
    callbacks intake's job (it has `callbacks.default_region`)."""
    if number is None:
        return None
    cleaned = number.translate(_SEPARATORS)
    if not cleaned or cleaned.lower() in ("anonymous", "unknown", "restricted", "private"):
        return None
    return cleaned
