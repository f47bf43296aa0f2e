"""A known set of calls around a DST day, for the report tests (every figure
they check is hand-computed from the table below), the dashboard and the CLI.

The day is Sunday 2026-10-25 in Europe/Kyiv, when clocks go back at 04:00
EEST to 03:00 EET: the local day runs 2026-10-24T21:00Z to 2026-10-25T22:00Z
(25 hours) and 03:30 happens twice. Windows: unique 7 days, target 60 s.

    id  UTC start    local (Kyiv)    dir client status   mgr wait talk category
    c1  10-24 20:59:59 Sat 23:59:59  in  A      answered 201   5  100  -   (the day before)
    d1  10-18 00:30:00 (a week ago)  in  D      answered 201   2   10  -
    e1  10-18 00:30:01               in  E      answered 201   2   10  -
    c2  10-25 00:30:00 Sun 03:30 EEST in A      missed   201  20    0  -
    d2  10-25 00:30:00 Sun 03:30 EEST in D      answered 201   2   61  2 (100)  7 d after d1
    e2  10-25 00:30:00 Sun 03:30 EEST in E      answered 201   2   59  9 (0)    7 d - 1 s
    c3  10-25 01:30:00 Sun 03:30 EET in  B      missed   202  30    0  -
    c4  10-25 06:00:00 Sun 08:00     in  A      answered 201  10   60  1 (1500.5)
    c5  10-25 07:00:00 Sun 09:00     out C      answered 202   8   30  2 (100)
    c6  10-25 08:00:00 Sun 10:00     in  C      busy     202   0    0  -
    c9  10-25 12:00:00 Sun 14:00     in  F      answered 202   4  200  -
    c7  10-25 21:59:59 Sun 23:59:59  in  anon   missed   -    15    0  -
    c8  10-25 22:00:00 Mon 00:00     in  B      answered 202   3  120  -   (the day after)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from tests.app.app_testkit import KYIV_JOURNAL, StartApp, api_session
from voicebot.app import VoicebotApp
from voicebot.journal import CallOutcome, CallStart

A, B, C, D, E, F = (f"+38050{n}{n}{n}{n}{n}{n}{n}" for n in range(1, 7))
#: The report query of that day.
DAY = "from=2026-10-25&to=2026-10-25"
#: The table above as data: id, start (UTC), direction, client, status,
#: manager, wait (s), talk (s); "-" is none.
_TABLE = """
    c1  10-24T20:59:59  inbound   A  answered  201   5  100
    d1  10-18T00:30:00  inbound   D  answered  201   2   10
    e1  10-18T00:30:01  inbound   E  answered  201   2   10
    c2  10-25T00:30:00  inbound   A  missed    201  20    0
    d2  10-25T00:30:00  inbound   D  answered  201   2   61
    e2  10-25T00:30:00  inbound   E  answered  201   2   59
    c3  10-25T01:30:00  inbound   B  missed    202  30    0
    c4  10-25T06:00:00  inbound   A  answered  201  10   60
    c5  10-25T07:00:00  outbound  C  answered  202   8   30
    c6  10-25T08:00:00  inbound   C  busy      202   0    0
    c9  10-25T12:00:00  inbound   F  answered  202   4  200
    c7  10-25T21:59:59  inbound   -  missed    -    15    0
    c8  10-25T22:00:00  inbound   B  answered  202   3  120
"""
_CLIENTS = {"A": A, "B": B, "C": C, "D": D, "E": E, "F": F, "-": None}
CALLS: list[dict[str, Any]] = [
    {"id": id_, "t": t, "dir": dir_, "n": _CLIENTS[n], "s": s, "m": None if m == "-" else m,
     "w": int(w), "k": int(k)}
    for id_, t, dir_, n, s, m, w, k in map(str.split, _TABLE.strip().splitlines())
]  # fmt: skip
#: The categorizations the menu files on PBX calls: code and value.
CATEGORIZED = {
    "c4": ("1", Decimal("1500.5")),
    "d2": ("2", None),
    "c5": ("2", None),
    "e2": ("9", None),
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-{text}+00:00")


def as_event(call: dict[str, Any]) -> dict[str, Any]:
    """One row of CALLS as the PBX posts it to /api/v1/calls/events."""
    start = at(call["t"])
    company = "+380440000000"
    inbound = call["dir"] == "inbound"
    body: dict[str, Any] = {
        "call_id": call["id"],
        "direction": call["dir"],
        "caller": (call["n"] or "anonymous") if inbound else company,
        "callee": company if inbound else call["n"],
        "status": call["s"],
        "started_at": start.isoformat(),
        "manager": call["m"],
    }
    if call["s"] == "answered":
        answered = start + timedelta(seconds=call["w"])
        body["answered_at"] = answered.isoformat()
        body["ended_at"] = (answered + timedelta(seconds=call["k"])).isoformat()
    else:
        body["ended_at"] = (start + timedelta(seconds=call["w"])).isoformat()
    return body


async def seed_known_calls(app: VoicebotApp, http: aiohttp.ClientSession) -> None:
    """The table above, in through POST /api/v1/calls/events and the menu's
    own path (a categorization filed on its PBX call by X-Call-ID)."""
    assert app.journal is not None and app.call_log is not None and app.categories is not None
    await app.categories.update("1", "Продаж", None, spam=False)
    for call in CALLS:
        async with http.post("/api/v1/calls/events", json=as_event(call)) as response:
            assert response.status == 201, await response.text()
    menu_at = at("10-25T13:00:00")
    for pbx_id, (code, value) in CATEGORIZED.items():
        name = {"1": "Продаж", "2": "asked for the address", "9": "spam"}[code]
        value = value if value is not None else Decimal({"2": 100, "9": 0}[code])
        start = CallStart(f"menu-{pbx_id}", f"sip-{pbx_id}", pbx_id, "x", None, "PCMA", menu_at)
        await app.journal.start_call(start)
        await app.journal.finish_call(
            start,
            CallOutcome("confirmed", code, name, value, "", 1, "confirmed", menu_at),
        )
        await app.call_log.record_categorization(f"menu-{pbx_id}")


async def start_with_known_calls(start_app: StartApp, **options: Any) -> VoicebotApp:
    """A running app (`start_app`'s `options` over the Kyiv journal) holding the
    known calls."""
    app = await start_app(**{"journal": KYIV_JOURNAL, **options})
    async with api_session(app) as http:
        await seed_known_calls(app, http)
    return app
