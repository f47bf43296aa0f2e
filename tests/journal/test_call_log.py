"""The call log on a real SQLite file: PBX events in (idempotent), menu
categorizations filed on their call by PBX id or by manager and time, the
gaps the unique/repeated rules read, and the category catalogue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from ivr import Category
from tests.journal.db_probes import trips_to_the_database_thread
from voicebot.journal import CallOutcome, CallStart, Journal
from voicebot.journal.call_events import CallEvent
from voicebot.journal.call_types import TypeRules
from voicebot.journal.calls import CallFilter, CallLog
from voicebot.journal.categories import (
    CategoryCatalogue,
    CategoryExists,
    CategoryNotFound,
    LastCategory,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
RULES = TypeRules.from_settings(unique_window_days=30, target_min_talk_s=30)


@dataclass
class Store:
    journal: Journal
    log: CallLog
    catalogue: CategoryCatalogue


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    journal = await Journal.open(tmp_path / "j.db")
    log = await CallLog.open(tmp_path / "j.db", RULES)
    catalogue = CategoryCatalogue(log.connection, log.write_lock)
    await catalogue.seed(
        [
            Category(code="1", name="sale", value=None),
            Category(code="9", name="spam", value=Decimal(0), spam=True),
        ]
    )
    try:
        yield Store(journal, log, catalogue)
    finally:
        await log.close()
        await journal.close()


def event(call_id: str, **changes: object) -> CallEvent:
    data: dict[str, object] = {
        "call_id": call_id,
        "direction": "inbound",
        "caller": "+380 (44) 123-45-67",
        "callee": "+380441110000",
        "status": "answered",
        "started_at": T0,
        "answered_at": T0 + timedelta(seconds=12),
        "ended_at": T0 + timedelta(seconds=12 + 95),
        "manager": "201",
    }
    data.update(changes)
    return CallEvent.model_validate(data)


async def categorize(
    journal: Journal,
    call_id: str,
    at: datetime,
    pbx_call_id: str | None,
    code: str = "1",
    name: str = "sale",
    value: Decimal | None = Decimal("1500.50"),
    manager: str = "201",
) -> None:
    start = CallStart(call_id, f"sip-{call_id}", pbx_call_id, manager, "+380441234567", "PCMA", at)
    await journal.start_call(start)
    await journal.finish_call(
        start,
        CallOutcome("confirmed", code, name, value, f"{code}#1#1", 1, "confirmed", at),
    )


async def test_event_stored_with_client_company_wait_and_talk(store: Store) -> None:
    stored = await store.log.record_call_event(event("pbx-1"))
    call = stored.call
    assert stored.created
    assert call.client_number == "+380441234567"  # separators people type are gone
    assert call.company_number == "+380441110000"
    assert (call.direction, call.status, call.manager) == ("inbound", "answered", "201")
    assert (call.wait_s, call.talk_s) == (12.0, 95.0)
    assert call.types(RULES) == ["unique", "target", "unique-target"]


async def test_same_pbx_call_id_updates_never_duplicates(store: Store) -> None:
    first = await store.log.record_call_event(event("pbx-1", status="missed", answered_at=None))
    again = await store.log.record_call_event(event("pbx-1", status="missed", answered_at=None))
    assert (again.created, again.changed) == (False, False)
    fixed = await store.log.record_call_event(event("pbx-1"))
    assert (fixed.created, fixed.changed) == (False, True)
    assert fixed.call.id == first.call.id and fixed.call.status == "answered"
    rows, _ = await store.log.list(CallFilter())
    assert len(rows) == 1


async def test_missed_call_waits_until_hangup_and_has_no_talk(store: Store) -> None:
    stored = await store.log.record_call_event(
        event("pbx-m", status="missed", answered_at=None, ended_at=T0 + timedelta(seconds=40))
    )
    assert (stored.call.wait_s, stored.call.talk_s) == (40.0, 0.0)
    assert stored.call.types(RULES) == ["unique", "missed"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"status": "answered", "started_at": "2026-11-20T10:00:00"}, "started_at"),
        ({"ended_at": T0 - timedelta(seconds=1)}, "ended_at"),
        ({"status": "missed"}, "answered_at"),
        ({"call_id": ""}, "call_id"),
        ({"caller": "x" * 65}, "caller"),
    ],
)
def test_event_refusals_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        event(str(changes.pop("call_id", "pbx-bad")), **changes)
    assert field in str(caught.value)


async def test_categorization_filed_on_the_pbx_call_by_its_id(store: Store) -> None:
    pbx = await store.log.record_call_event(event("pbx-7"))
    await categorize(store.journal, "call_a", T0 + timedelta(minutes=5), "pbx-7")
    filed = await store.log.record_categorization("call_a")
    assert filed is not None and filed.call.id == pbx.call.id and not filed.created
    assert (filed.call.category_code, filed.call.value) == ("1", Decimal("1500.50"))


async def test_filing_a_categorization_is_one_trip_to_the_database_thread(
    store: Store,
) -> None:
    """The menu files every saved call here: lookups, update and read-back in
    one transaction, one trip, so the file's write lock is never held across
    turns of a busy event loop (the journal's next save would wait for it)."""
    await store.log.record_call_event(event("pbx-7"))
    await categorize(store.journal, "call_a", T0 + timedelta(minutes=5), "pbx-7")
    trips = trips_to_the_database_thread(store.log.connection)
    filed = await store.log.record_categorization("call_a")
    assert trips[0] == 1
    assert filed is not None and filed.call.category_code == "1"
    pbx = await store.log.record_call_event(event("pbx-8"))
    assert trips[0] == 2 and pbx.created


async def test_given_the_journals_group_commit_the_log_writes_in_its_batches(
    tmp_path: Path,
) -> None:
    """The running bot's call log writes through the journal's group commit: a
    filing and another call's save commit in one batch on the journal's
    connection, none on the log's own (two connections writing one file wait
    for each other in SQLite's busy handler, whose sleeps grow to tens of ms)."""
    journal = await Journal.open(tmp_path / "j.db")
    log = await CallLog.open(tmp_path / "j.db", RULES, writes=journal.group_commit)
    try:
        pbx = await log.record_call_event(event("pbx-7"))
        await categorize(journal, "call_a", T0 + timedelta(minutes=5), "pbx-7")
        other = CallStart("call_b", "sip-b", "pbx-9", "202", None, "PCMU", T0)
        own_trips = trips_to_the_database_thread(log.connection)
        batches = journal.group_commit.batches
        filed, _ = await asyncio.gather(
            log.record_categorization("call_a"),
            journal.finish_call(
                other, CallOutcome("confirmed", "1", "sale", None, "1#1", 1, "confirmed", T0)
            ),
        )
        assert own_trips[0] == 0
        assert journal.group_commit.batches == batches + 1
        assert filed is not None and filed.call.id == pbx.call.id
        assert (filed.call.category_code, filed.call.value) == ("1", Decimal("1500.50"))
        assert (await log.get(pbx.call.id)) == filed.call
    finally:
        await log.close()
        await journal.close()


async def test_menu_call_first_then_the_pbx_event_fills_it_in(store: Store) -> None:
    await categorize(store.journal, "call_b", T0 + timedelta(minutes=2), "pbx-8")
    menu = await store.log.record_categorization("call_b")
    assert menu is not None and menu.created and menu.call.source == "menu"
    pbx = await store.log.record_call_event(event("pbx-8"))
    assert pbx.call.id == menu.call.id and not pbx.created
    assert pbx.call.source == "pbx" and pbx.call.category_code == "1"
    assert pbx.call.talk_s == 95.0


async def test_without_an_id_the_managers_call_that_just_ended_gets_it(store: Store) -> None:
    # The PBX sent no X-Call-ID; the manager's call ended at T0+107 s.
    await store.log.record_call_event(
        event(
            "pbx-older",
            started_at=T0 - timedelta(hours=1),
            answered_at=T0 - timedelta(minutes=59),
            ended_at=T0 - timedelta(minutes=50),
        )
    )
    pbx = await store.log.record_call_event(event("pbx-9"))
    await categorize(store.journal, "call_c", T0 + timedelta(seconds=110), None)
    filed = await store.log.record_categorization("call_c")
    assert filed is not None and filed.call.id == pbx.call.id
    # Another manager's menu, or one long after, is a call of its own.
    await categorize(store.journal, "call_d", T0 + timedelta(seconds=110), None, manager="202")
    other = await store.log.record_categorization("call_d")
    assert other is not None and other.created and other.call.source == "menu"
    await categorize(store.journal, "call_e", T0 + timedelta(hours=3), None)
    late = await store.log.record_categorization("call_e")
    assert late is not None and late.created


async def test_menu_call_without_id_merged_by_a_later_event(store: Store) -> None:
    await categorize(store.journal, "call_f", T0 + timedelta(seconds=110), None)
    menu = await store.log.record_categorization("call_f")
    assert menu is not None
    pbx = await store.log.record_call_event(event("pbx-10"))
    assert pbx.call.id == menu.call.id and pbx.call.pbx_call_id == "pbx-10"


async def test_unique_and_repeated_at_the_window_edge_even_out_of_order(store: Store) -> None:
    window = timedelta(days=30)
    later = T0 + window  # exactly the window after T0: unique again
    just_inside = T0 + window - timedelta(seconds=1)

    async def at(call_id: str, moment: datetime) -> int:
        stored = await store.log.record_call_event(
            event(call_id, started_at=moment, answered_at=moment, ended_at=moment)
        )
        return stored.call.id

    edge = await at("e-edge", later)
    first = await at("e-first", T0)  # arrives after the later one (a CDR import)
    types = {call.id: call.types(RULES) for call in (await store.log.list(CallFilter()))[0]}
    assert "unique" in types[first] and "unique" in types[edge]
    inside = await at("e-inside", just_inside)
    calls = {call.id: call for call in (await store.log.list(CallFilter()))[0]}
    assert "repeated" in calls[inside].types(RULES)
    assert calls[edge].prev_inbound_gap_s == 1.0  # now follows e-inside by a second
    assert "repeated" in calls[edge].types(RULES)
    # Outbound calls to the number neither count nor get these types.
    out = await store.log.record_call_event(
        event(
            "e-out",
            direction="outbound",
            caller="201",
            callee="+380441234567",
            started_at=T0 + timedelta(days=1),
            answered_at=None,
            ended_at=None,
            status="missed",
        )
    )
    assert out.call.types(RULES) == []


async def test_a_call_resent_as_outbound_leaves_the_gaps(store: Store) -> None:
    """A PBX re-sends an inbound call as outbound: it keeps no gap, and the
    number's next inbound call now counts from the one before it."""
    for n in range(3):
        moment = T0 + timedelta(days=n)
        await store.log.record_call_event(
            event(f"g-{n}", started_at=moment, answered_at=moment, ended_at=moment)
        )
    moment = T0 + timedelta(days=1)
    middle = await store.log.record_call_event(
        event(
            "g-1", direction="outbound", caller="201", callee="+380441234567",
            started_at=moment, answered_at=moment, ended_at=moment,
        )
    )  # fmt: skip
    assert middle.call.prev_inbound_gap_s is None and middle.call.direction == "outbound"
    calls = {call.pbx_call_id: call for call in (await store.log.list(CallFilter()))[0]}
    assert calls["g-2"].prev_inbound_gap_s == 2 * 86400.0
    assert calls["g-0"].prev_inbound_gap_s is None


async def test_target_at_the_minimum_talk(store: Store) -> None:
    exactly = await store.log.record_call_event(
        event("t-30", answered_at=T0, ended_at=T0 + timedelta(seconds=30))
    )
    short = await store.log.record_call_event(
        event(
            "t-29", caller="+380500000000", answered_at=T0, ended_at=T0 + timedelta(seconds=29.999)
        )
    )
    assert "target" in exactly.call.types(RULES)
    assert "target" not in short.call.types(RULES)


async def test_spam_follows_the_catalogue_flag(store: Store) -> None:
    await categorize(store.journal, "call_s", T0, "pbx-s", code="9", name="spam", value=None)
    filed = await store.log.record_categorization("call_s")
    assert filed is not None and filed.call.types(RULES) == ["spam"]
    await store.catalogue.update("9", "spam", Decimal(0), spam=False)
    call = await store.log.get(filed.call.id)
    assert call is not None and "spam" not in call.types(RULES)


async def test_list_filters_by_type_with_the_same_rules_as_python(store: Store) -> None:
    moments = [T0 + timedelta(days=d) for d in (0, 3, 40, 41)]
    for n, moment in enumerate(moments):
        status = "answered" if n % 2 == 0 else "missed"
        await store.log.record_call_event(
            event(
                f"f-{n}",
                status=status,
                started_at=moment,
                answered_at=moment if status == "answered" else None,
                ended_at=moment + timedelta(seconds=45),
            )
        )
    everything, _ = await store.log.list(CallFilter())
    for call_type in ("unique", "repeated", "target", "unique-target", "missed", "spam"):
        rows, _ = await store.log.list(CallFilter(call_type=call_type))  # type: ignore[arg-type]
        expected = [c.id for c in everything if call_type in c.types(RULES)]
        assert [c.id for c in rows] == expected, call_type
    repeated, _ = await store.log.list(CallFilter(call_type="repeated"))
    assert len(repeated) == 2


async def test_catalogue_seeds_once_and_deletes_softly(store: Store) -> None:
    assert await store.catalogue.seed([Category(code="5", name="x")]) == 0
    await store.catalogue.add("4", "delivery", Decimal("12.50"))
    with pytest.raises(CategoryExists):
        await store.catalogue.add("4", "again")
    removed = await store.catalogue.remove("4")
    assert removed.deleted
    assert "4" not in await store.catalogue.menu_categories()
    with pytest.raises(CategoryNotFound):
        await store.catalogue.update("4", "x", None, False)
    revived = await store.catalogue.add("4", "delivery 2")
    assert not revived.deleted and revived.name == "delivery 2"
    await store.catalogue.remove("4")
    await store.catalogue.remove("9")
    with pytest.raises(LastCategory):
        await store.catalogue.remove("1")
    everything = await store.catalogue.entries(include_deleted=True)
    assert [e.code for e in everything] == ["1", "4", "9"]


async def test_spam_pages_merge_every_spam_code_in_order(store: Store) -> None:
    # Two spam codes (9 seeded, 8 flagged now), interleaved in time with a
    # non-spam call; pages of two neither skip nor repeat across the codes.
    await store.catalogue.add("8", "robocall", None, spam=True)
    codes = ["9", "8", "1", "9", "8", "8"]
    for n, code in enumerate(codes):
        at = T0 + timedelta(minutes=10 * n)
        await store.log.record_call_event(
            event(f"s-{n}", started_at=at, answered_at=at, ended_at=at + timedelta(seconds=20))
        )
        await categorize(
            store.journal, f"call_s{n}", at + timedelta(seconds=30), f"s-{n}", code=code
        )
        await store.log.record_categorization(f"call_s{n}")
    seen: list[str | None] = []
    cursor = None
    while True:
        rows, cursor = await store.log.list(CallFilter(call_type="spam"), limit=2, cursor=cursor)
        seen += [row.pbx_call_id for row in rows]
        if cursor is None:
            break
    assert seen == ["s-5", "s-4", "s-3", "s-1", "s-0"]  # newest first, s-2 (code 1) not spam
    only_8, _ = await store.log.list(CallFilter(call_type="spam", category="8"))
    assert [row.pbx_call_id for row in only_8] == ["s-5", "s-4", "s-1"]
    assert (await store.log.list(CallFilter(call_type="spam", category="1")))[0] == []
