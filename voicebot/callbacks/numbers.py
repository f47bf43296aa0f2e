"""The client's number: normalised to E.164, refused unless it may be dialled.

A missed call's number comes from the PBX (a header, a From user, a JSON
field) and decides whom the bot calls on the company's trunk, so it is
treated as hostile: the bot dials only numbers matching
`callbacks.allowed_number_patterns` (toll fraud is a stranger making a PBX
call premium-rate numbers), and never a number `phonenumbers` knows as
premium-rate or shared-cost, whatever the patterns say.

- A number valid in `callbacks.default_region` (or written `+<country>...`)
  becomes E.164 (`+380441234567`).
- One that is not (an internal extension `201`, a short code) is kept
  verbatim only if a pattern allows it.
- Anonymous, empty or unparseable callers are refused with a reason; the
  intake records them as skipped jobs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

ANONYMOUS = frozenset({"anonymous", "unknown", "restricted", "private", "unavailable", "withheld"})
_SEPARATORS = str.maketrans("", "", " -().\t")
_DIALLABLE = re.compile(r"^\+?[0-9*#]{1,32}$")
#: Number types a callback never rings, whatever the patterns say.
_NEVER = {PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST}


@dataclass(frozen=True, slots=True)
class ClientNumber:
    """A number the bot may call back."""

    #: The key jobs merge on: E.164, or the verbatim internal number.
    number: str
    #: The number as the PBX wrote it, separators removed.
    raw: str
    #: The national form (digits, with the trunk prefix: 0441234567), or the verbatim number.
    national: str
    e164: bool

    def dial(self, template: str) -> str:
        return template.format(
            e164=self.number, national=self.national if self.e164 else self.raw, raw=self.raw
        )


@dataclass(frozen=True, slots=True)
class RefusedNumber:
    """A caller that is recorded but never dialled, and why."""

    raw: str | None
    #: anonymous | unparseable | not_allowed | premium_rate
    reason: str
    #: The E.164 form when there was one (for the record).
    number: str | None = None


class NumberRules:
    def __init__(
        self,
        default_region: str | None,
        allowed_patterns: Sequence[str],
        dial_template: str = "{e164}",
    ) -> None:
        self.default_region = default_region
        self.dial_template = dial_template
        self._allowed = tuple(re.compile(pattern) for pattern in allowed_patterns)

    def allowed(self, number: str) -> bool:
        """The whole number matches one pattern (a pattern cannot allow a
        prefix and, with it, whatever follows)."""
        return any(pattern.fullmatch(number) for pattern in self._allowed)

    def classify(self, text: str | None) -> ClientNumber | RefusedNumber:
        """Whom a missed call from `text` would call back, or why nobody."""
        raw = (text or "").strip().translate(_SEPARATORS)
        if raw.lower().startswith("sip:"):
            raw = raw[4:].split("@", 1)[0]
        if not raw or raw.lower() in ANONYMOUS:
            return RefusedNumber(raw or None, "anonymous")
        if not _DIALLABLE.match(raw):
            return RefusedNumber(raw[:64], "unparseable")
        parsed = None
        try:
            parsed = phonenumbers.parse(raw, self.default_region)
        except phonenumbers.NumberParseException:
            parsed = None
        if parsed is not None and phonenumbers.is_valid_number(parsed):
            e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
            if phonenumbers.number_type(parsed) in _NEVER:
                return RefusedNumber(raw, "premium_rate", e164)
            if not self.allowed(e164):
                return RefusedNumber(raw, "not_allowed", e164)
            national = re.sub(
                r"[^0-9]", "", phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
            )
            return ClientNumber(number=e164, raw=raw, national=national, e164=True)
        # Not a public number here: an extension or a short code, dialled
        # as written only when the operator allowed its form.
        if self.allowed(raw):
            return ClientNumber(number=raw, raw=raw, national=raw, e164=False)
        return RefusedNumber(raw, "not_allowed" if parsed is not None else "unparseable")
