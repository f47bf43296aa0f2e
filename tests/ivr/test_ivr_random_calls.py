"""Property-style checks over many random calls (fixed seeds, no new dependencies).

Whatever the manager keys, whenever the prompts end or the timers fire, and
whenever the line drops: `handle` never raises, exactly one `Save` is emitted
(before any `HangUp`), nothing happens after it, the call never waits for
nothing (checked by the `call` fixture after every event), silence always
ends the call, and the saved result is coherent.
"""

import random
from decimal import Decimal

import pytest

from ivr import KEYPAD, Digit, Hangup, PromptFinished, Start, State, TimerFired

CONFIGS = [
    {"ask_category": a, "ask_value": v, "confirm": confirm, "max_attempts": attempts}
    for a, v in [(True, True), (True, False), (False, True)]
    for confirm in (True, False)
    for attempts in (1, 3)
]

# Weighted towards keys that make progress: codes, digits, terminator, "1" to confirm.
KEYS = "0123456789" + "1234" * 2 + "#" * 4 + "*" * 2 + "ABCD" + "x"


def random_event(rng, c):
    roll = rng.random()
    if roll < 0.02:
        return Hangup()
    if roll < 0.04:
        return TimerFired(rng.randint(0, c.last_token + 1))  # mostly stale
    if roll < 0.05:
        return Start()
    if roll < 0.4:
        if c.playing:
            return PromptFinished()
        if c.token is not None:
            return TimerFired(c.token)
    return Digit(rng.choice(KEYS))


def ident(config):
    return "-".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in config.items())


@pytest.mark.parametrize("config", CONFIGS, ids=ident)
def test_random_calls_save_exactly_once(call, config):
    rng = random.Random(f"ivr-{ident(config)}")
    outcomes = set()
    for _ in range(300):
        c = call(**config)
        logged = []
        if rng.random() < 0.98:
            c.start()
        for _ in range(rng.randint(0, 80)):
            if c.menu.finished:
                break
            event = random_event(rng, c)
            # keys after the save (during the goodbye) are not in the saved log
            live = c.menu.state not in (State.IDLE, State.SAVING, State.CLOSING, State.DONE)
            if isinstance(event, Digit) and event.key in KEYPAD and live:
                logged.append(event.key)
            c.send(event)
        # Then silence: only prompts ending and timers firing. It must end the call.
        for _ in range(100):
            if c.menu.finished or c.menu.state is State.IDLE:
                break
            if c.playing:
                c.played()
            else:
                c.timeout()
        if not c.menu.finished:
            c.hangup()
        assert c.menu.finished
        assert len(c.saves) == 1
        for event in (Hangup(), Digit("1"), PromptFinished(), TimerFired(c.last_token), Start()):
            assert c.send(event) == []

        result = c.saved.result
        assert result == c.menu.result
        assert result.digits == "".join(logged)
        assert 0 <= result.attempts <= config["max_attempts"]
        if result.category is not None:
            assert result.category in c.categories.values()
        if result.value is not None:
            assert isinstance(result.value, Decimal) and result.value >= 0
        if result.status == "confirmed":
            outcomes.add("confirmed")
            assert result.attempts >= 1
            assert (result.category is not None) == config["ask_category"]
            if not config["ask_value"]:
                assert result.value == result.category.value
            if config["confirm"]:
                assert "1" in result.digits
        else:
            outcomes.add("incomplete")
    # the random walk really exercises both endings
    assert outcomes == {"confirmed", "incomplete"}


@pytest.mark.parametrize("seed", range(5))
def test_garbage_never_raises(call, seed):
    rng = random.Random(seed)
    c = call()
    junk = [Start(), Hangup(), PromptFinished(), TimerFired(-1), TimerFired(10**9)]
    junk += [Digit(k) for k in ["", "##", "a", "\x00", "é", "10", *KEYPAD]]
    for _ in range(500):
        event = rng.choice(junk)
        assert isinstance(c.menu.handle(event), list)
    assert c.menu.finished  # Hangup was among them
