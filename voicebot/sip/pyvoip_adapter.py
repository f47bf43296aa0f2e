"""The one place the SIP side touches pyVoIP (DESIGN.md §2, docs/sip-stack.md).

We take from pyVoIP only what it gets right: the reason-phrase table
(`SIPStatus`) and the RTP payload-type table (`PayloadType`). Its message
parser, digest, transactions and dialogs are replaced by our modules.

`pyVoIP.SIP` cannot be imported first: it imports `pyVoIP.VoIP`, which
imports `pyVoIP.SIP` back (circular). Importing `pyVoIP.VoIP` first works.
"""

from __future__ import annotations

import pyVoIP.VoIP  # noqa: F401  (breaks pyVoIP's SIP <-> VoIP import cycle)
from pyVoIP.RTP import PayloadType
from pyVoIP.SIP import SIPStatus

# pyVoIP 1.6.8 spells 423 "Session Interval Too Breif"; RFC 3261 §21.4.17 says this.
_PHRASE_FIXES = {423: "Interval Too Brief"}


def reason_phrase(status: int) -> str:
    """RFC 3261 reason phrase for `status` ("" when pyVoIP does not know it)."""
    if status in _PHRASE_FIXES:
        return _PHRASE_FIXES[status]
    try:
        return str(SIPStatus(status).phrase)
    except ValueError:
        return ""


def static_payload_type(name: str) -> tuple[int, int]:
    """(payload type, clock rate) of a static RTP codec by encoding name, e.g. "PCMA"."""
    pt = PayloadType[name.upper()]
    return int(pt.value), int(pt.rate)


def static_codec(payload_type: int) -> tuple[str, int] | None:
    """(encoding name, clock rate) of a static payload type (0 -> ("PCMU", 8000)).

    None when unknown or dynamic. Name and rate come from the same table entry:
    looking the rate up again by name broke on DVI4, whose four entries
    (PT 5, 6, 16, 17) are named DVI4_8000 … DVI4_22050 (a KeyError per INVITE).
    """
    try:
        pt = PayloadType(payload_type)
    except ValueError:
        return None
    if not isinstance(pt.value, int):
        return None
    return str(pt).upper(), int(pt.rate)
