"""`python -m voicebot run` with a wall-clock stamp at every stage a key takes to its webhook
(bench only; `full_duplex.py --stages` starts the bot through it). Not run by hand.

    python bench/stage_trace.py OUT.json run [--loop uvloop]

Wraps, in this process only, the few functions a confirmed key passes through
and appends `time.time()` (epoch: the generator and the webhook receiver
stamp the same clock) per call; writes OUT.json when the bot exits:

* ``key``: a digit reached the call (`_rtp_key` / `_inband_key`), the last one per call;
* ``save``: `Journal.finish_call` was entered, ``saved``: it returned (committed);
* ``claimed``: the dispatcher holds the delivery (a `Claim` made from the row its
  claim statement returned, or handed over by the save: `deliver_claimed`);
* ``post``: the dispatcher starts the POST (`Dispatcher._send` entered).

Calls are keyed by ``pbx_call_id`` (the generator's ``bench-<i>``); webhook
ids are mapped back through what `finish_call` returned. The cost is one
`time.time()` and a dict store per stage and call: noise next to the media.
"""

from __future__ import annotations

import atexit
import collections
import functools
import gc
import json
import os
import runpy
import sys
import time
from typing import Any

OUT = sys.argv.pop(1)
# Not bench/ first on the path: its webhooks.py would shadow the webhooks package.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
STAMPS: dict[str, dict[str, float]] = {}  # stage -> pbx_call_id or webhook_id -> epoch
HOOK_OF: dict[str, str] = {}  # webhook_id -> pbx_call_id
# With BENCH_TRACE_TICKS set: every media clock phase's (start, end, CPU
# seconds the main thread spent in it: far below end - start, it waited for a
# core or the GIL; the phase, voicebot.media.clock's SEND ... MID_ANALYSE) and
# every group commit batch's (start, end, writes, CPU seconds) on the database thread;
# epoch seconds.
TICKS: list[tuple[float, float, float, int]] = []
BATCHES: list[tuple[float, float, int, float]] = []
# With BENCH_TRACE_GC (or BENCH_TRACE_TICKS): every garbage collection's (start,
# end, generation, objects collected); a few a second, so the trace itself
# barely adds to what it measures.
COLLECTIONS: list[tuple[float, float, int, int]] = []
FULL_PASS_CPU: list[float] = []  # CPU seconds of each full pass, in COLLECTIONS' order
# With BENCH_GC_YOUNG: at every young pass's start, when, and the commonest kinds of
# object it walks (what piled up since the last one; a tuple by its items' types).
YOUNG: list[tuple[float, dict[str, int]]] = []


def stamp(stage: str, key: str | None, *, first: bool = False) -> None:
    """`stage` reached for `key` now; with `first`, a later stamp (a retry) keeps the first."""
    if key:
        stamps = STAMPS.setdefault(stage, {})
        if not first or key not in stamps:
            stamps[key] = time.time()


def install() -> None:
    import voicebot  # noqa: F401  (sets the BLAS thread count before numpy loads)
    import webhooks.dispatcher as dispatcher
    from voicebot.call import CategorizationCall
    from voicebot.journal.store import Journal

    for name in ("_rtp_key", "_inband_key"):
        original = getattr(CategorizationCall, name)

        @functools.wraps(original)
        def on_key(self: Any, key: str, _original: Any = original) -> None:
            stamp("key", self.identity.pbx_call_id)
            _original(self, key)

        setattr(CategorizationCall, name, on_key)

    finish = Journal.finish_call

    @functools.wraps(finish)
    async def finish_call(self: Any, call: Any, outcome: Any, **kw: Any) -> list[str]:
        stamp("save", call.pbx_call_id)
        ids: list[str] = await finish(self, call, outcome, **kw)
        stamp("saved", call.pbx_call_id)
        for webhook_id in ids:
            HOOK_OF[webhook_id] = call.pbx_call_id
        return ids

    Journal.finish_call = finish_call  # type: ignore[method-assign]

    claim = dispatcher.Claim

    class StampedClaim(claim):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            stamp("claimed", self.webhook_id, first=True)

    dispatcher.Claim = StampedClaim  # type: ignore[misc]

    handed = getattr(dispatcher.Dispatcher, "deliver_claimed", None)
    if handed is not None:  # claimed in the save's own transaction, handed over on commit

        @functools.wraps(handed)
        def deliver_claimed(self: Any, claims: Any) -> None:
            for claim in claims:
                stamp("claimed", claim.webhook_id, first=True)
            handed(self, claims)

        dispatcher.Dispatcher.deliver_claimed = deliver_claimed  # type: ignore[attr-defined]

    send = dispatcher.Dispatcher._send

    @functools.wraps(send)
    async def _send(self: Any, endpoint: Any, claim: Any, timestamp: int) -> Any:
        stamp("post", claim.webhook_id, first=True)
        return await send(self, endpoint, claim, timestamp)

    dispatcher.Dispatcher._send = _send  # type: ignore[method-assign]
    if os.environ.get("BENCH_TRACE_TICKS"):
        _trace_ticks()
    if os.environ.get("BENCH_TRACE_TICKS") or os.environ.get("BENCH_TRACE_GC"):
        _trace_collections()


def _trace_ticks() -> None:
    import voicebot.journal.group_commit as group_commit
    from voicebot.media.clock import MediaClock

    run_phase = MediaClock._run_phase

    def _run_phase(self: Any, n: int, phase: int) -> None:
        began, cpu = time.time(), time.thread_time()
        run_phase(self, n, phase)
        TICKS.append((began, time.time(), time.thread_time() - cpu, phase))

    MediaClock._run_phase = _run_phase  # type: ignore[method-assign]
    run_batch = group_commit._run_batch

    def _run_batch(raw: Any, batch: Any) -> Any:
        began, cpu = time.time(), time.thread_time()
        try:
            return run_batch(raw, batch)
        finally:
            BATCHES.append((began, time.time(), len(batch), time.thread_time() - cpu))

    group_commit._run_batch = _run_batch


def _trace_collections() -> None:
    young_census = bool(os.environ.get("BENCH_GC_YOUNG"))

    began: list[float] = []

    census: dict[str, int] = {}

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if young_census and info["generation"] == 0:
                # What piled up since the last pass: the allocations a young
                # pass walks (summed over passes; bench/README.md).
                kinds = collections.Counter(map(_kind, gc.get_objects(generation=0)))
                YOUNG.append((time.time(), dict(kinds.most_common(12))))
            began[:] = [time.time(), time.thread_time()]
        elif began:
            COLLECTIONS.append((began[0], time.time(), info["generation"], info["collected"]))
            if info["generation"] == 2:  # and the CPU it took in the collecting thread
                FULL_PASS_CPU.append(time.thread_time() - began[1])
            if info["generation"] == 2 and os.environ.get("BENCH_GC_CENSUS") and not census:
                census.update(_by_type(gc.get_objects()))
                STAMPS["gc_census"] = census  # type: ignore[assignment]

    gc.callbacks.append(on_collection)
    if os.environ.get("BENCH_GC_CENSUS_AT"):
        # What a full collection would walk at that moment (a full pass may not
        # come in a short run): every tracked object not frozen, by type; then
        # one full pass, timed in COLLECTIONS like the collector's own.
        import threading

        def take() -> None:
            objects = gc.get_objects()
            census.update(_by_type(objects))
            STAMPS["gc_census"] = census  # type: ignore[assignment]
            # What a pass visits beside the objects: their referents, by type.
            visits = collections.Counter()
            for o in objects:
                visits[type(o).__qualname__] += len(gc.get_referents(o))
            STAMPS["gc_referents"] = dict(visits.most_common(20))  # type: ignore[assignment]
            del objects
            gc.collect()

        threading.Timer(float(os.environ["BENCH_GC_CENSUS_AT"]), take).start()


def _kind(o: Any) -> str:
    """An object's type; a tuple's with its items' (what made it tells them apart)."""
    if type(o) is tuple:  # its items through the collector: one being built has holes
        return "tuple(" + ",".join(type(i).__qualname__ for i in gc.get_referents(o)[:4]) + ")"
    return type(o).__qualname__


def _garbage_census() -> dict[str, int]:
    """With BENCH_GC_GARBAGE: every object the collector found unreachable (in a
    reference cycle) over the bot's life, by type: DEBUG_SAVEALL, set at start,
    keeps them in gc.garbage instead of freeing them (a bench-only leak)."""
    gc.collect()
    return _by_type(gc.garbage)


def _by_type(objects: list[Any]) -> dict[str, int]:
    """The 40 commonest types among `objects`, with counts, and their total."""
    kinds = collections.Counter(type(o).__qualname__ for o in objects)
    return dict(kinds.most_common(40), total=sum(kinds.values()))


def dump() -> None:
    out: dict[str, dict[str, float]] = {}
    for stage, stamps in STAMPS.items():
        for key, at in stamps.items():
            pbx = HOOK_OF.get(key, key) if stage in ("claimed", "post") else key
            out.setdefault(stage, {})[pbx] = at
    if os.environ.get("BENCH_GC_GARBAGE"):
        out["gc_garbage"] = _garbage_census()  # type: ignore[assignment]
    with open(OUT, "w") as f:
        json.dump(
            {
                **out,
                "ticks": TICKS,
                "batches": BATCHES,
                "collections": COLLECTIONS,
                "full_pass_cpu": FULL_PASS_CPU,
                "young": YOUNG,
            },
            f,
        )


if __name__ == "__main__":
    if os.environ.get("BENCH_SWITCH_INTERVAL_S"):  # an experiment: the GIL's switch interval
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL_S"]))
    if os.environ.get("BENCH_GC_THRESHOLD"):  # an experiment: "gen0,gen1,gen2" thresholds
        gc.set_threshold(*(int(x) for x in os.environ["BENCH_GC_THRESHOLD"].split(",")))
    if os.environ.get("BENCH_GC_GARBAGE"):
        gc.set_debug(gc.DEBUG_SAVEALL)
    install()
    atexit.register(dump)
    sys.argv[0] = "voicebot"
    runpy.run_module("voicebot", run_name="__main__", alter_sys=True)
