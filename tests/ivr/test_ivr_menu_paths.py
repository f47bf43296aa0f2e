"""Whole calls through the menu, asserting the exact actions of every event."""

from decimal import Decimal
from unittest.mock import ANY

import pytest

from ivr import (
    CancelTimer,
    Category,
    Digit,
    HangUp,
    Hangup,
    Menu,
    MenuConfig,
    MenuResult,
    Play,
    PromptFinished,
    Save,
    SaveFailed,
    Start,
    StartTimer,
    State,
    StopPlayback,
    TimerFired,
)
from tests.ivr.conftest import FIRST, NEXT, SaveOf

#: the Save emitted when the outcome is decided (its result is checked via `c.saved`)
ANY_SAVE = SaveOf()
SAID_3 = ("you_entered_category", "digit_3")
SAID_1500 = ("you_entered_value", "digit_1", "digit_5", "digit_0", "digit_0")


def listening(call, **options):
    """A call whose greeting has played: the menu waits for the first key."""
    c = call(**options)
    c.start()
    c.played()
    return c


def to_confirm(call, keys="3#1500#", **options):
    """Start a call and key `keys` with every prompt played out; returns the call."""
    c = listening(call, **options)
    for key in keys:
        if c.menu.state is State.PROMPTING_ENTRY:
            c.played()
        c.press(key)
    return c


def saved_on_confirm(c):
    """Hear the read-back out, key 1, hear "saved": the result the menu saved."""
    c.played()
    c.press("1")
    c.played()
    return c.saved.result


def result(status, category, value, digits, attempts):
    return MenuResult(status, category, value, digits, attempts)


# -- the happy path and values ------------------------------------------------


def test_happy_path_3_1500_confirmed(call):
    c = call()
    cat = c.categories["3"]
    assert c.menu.state is State.IDLE
    assert c.start() == [Play(("greeting", "ask_category"))]
    assert c.menu.state is State.PROMPTING_ENTRY
    assert c.played() == [FIRST]
    assert c.menu.state is State.COLLECTING_ENTRY
    assert c.keys("3#") == [[NEXT], [CancelTimer(), Play(("ask_value",))]]
    assert c.played() == [FIRST]
    assert c.keys("1500#") == [
        [NEXT],
        [NEXT],
        [NEXT],
        [NEXT],
        [CancelTimer(), Play((*SAID_3, *SAID_1500, "confirm"))],
    ]
    assert c.menu.state is State.PROMPTING_CONFIRM
    assert c.played() == [FIRST]
    assert c.menu.state is State.AWAITING_CONFIRM
    expected = result("confirmed", cat, Decimal("1500"), "3#1500#1", 1)
    assert c.press("1") == [CancelTimer(), Save(expected), Play(("saved",))]
    assert c.menu.state is State.CLOSING
    assert not c.menu.finished
    assert c.played() == [HangUp()]
    assert c.saved == Save(expected)
    assert c.menu.finished and c.menu.state is State.DONE
    assert c.menu.result == expected


def test_saved_is_said_only_after_the_call_reports_the_save_durable(call):
    c = to_confirm(call, auto_store=False)
    expected = result("confirmed", c.categories["3"], Decimal("1500"), "3#1500#1", 1)
    # The outcome is decided: Save, and nothing said yet.
    assert c.press("1") == [StopPlayback(), Save(expected)]
    assert c.menu.state is State.SAVING
    assert c.press("1") == [] and c.press("2") == []  # keys while saving change nothing
    assert c.menu.result == expected
    assert c.stored() == [Play(("saved",))]
    assert c.menu.state is State.CLOSING
    assert c.played() == [HangUp()]


def test_a_save_that_failed_says_not_saved(call):
    c = to_confirm(call, auto_store=False)
    c.press("1")
    assert c.send(SaveFailed()) == [Play(("not_saved",))]
    assert c.played() == [HangUp()]
    assert c.saved.result.status == "confirmed"  # what the menu asked to store


def test_timer_tokens_grow_and_the_armed_one_is_the_last(call):
    c = call()
    c.start()
    assert c.played() == [StartTimer(8.0, 1)]
    assert c.press("3") == [StartTimer(4.0, 2)]
    assert c.press("#") == [CancelTimer(), Play(("ask_value",))]
    assert c.played() == [StartTimer(8.0, 3)]


def test_value_with_decimal_point(call):
    c = to_confirm(call, "3#1500*5")
    assert c.press("0") == [NEXT]
    assert c.press("#") == [
        CancelTimer(),
        Play((*SAID_3, *SAID_1500, "point", "digit_5", "digit_0", "confirm")),
    ]
    c.played()
    c.press("1")
    c.played()
    assert c.saved.result.value == Decimal("1500.50")
    assert str(c.saved.result.value) == "1500.50"
    assert c.saved.result.digits == "3#1500*50#1"


def d(digits):
    return tuple("point" if ch == "*" else f"digit_{ch}" for ch in digits)


@pytest.mark.parametrize(
    ("keys", "value", "said"),
    [
        ("0015#", Decimal("15"), d("15")),
        ("0*5#", Decimal("0.5"), d("0*5")),
        ("15*#", Decimal("15"), d("15")),
        ("0#", Decimal("0"), d("0")),
        ("999999999999#", Decimal("999999999999"), d("9" * 12)),
        ("123456*789012#", Decimal("123456.789012"), d("123456*789012")),
    ],
)
def test_value_forms(call, keys, value, said):
    c = call()
    c.start()
    c.keys("3#")
    c.played()
    *_, last = c.keys(keys)
    assert last == [CancelTimer(), Play((*SAID_3, "you_entered_value", *said, "confirm"))]
    c.played()
    c.press("1")
    c.played()
    assert c.saved.result.value == value


def test_terminator_alone_takes_the_category_default(call):
    c = to_confirm(call, "2#")
    c.played()
    assert c.press("#") == [
        CancelTimer(),
        Play(
            (
                "you_entered_category",
                "digit_2",
                "you_entered_value",
                *("digit_1", "digit_0", "digit_0"),
                "confirm",
            )
        ),
    ]
    assert saved_on_confirm(c) == result("confirmed", c.categories["2"], Decimal("100"), "2##1", 1)


def test_terminator_alone_with_no_default_is_no_value(call):
    c = to_confirm(call, "3#")
    c.played()
    assert c.press("#") == [
        CancelTimer(),
        Play((*SAID_3, "you_entered_value", "no_value", "confirm")),
    ]
    assert saved_on_confirm(c) == result("confirmed", c.categories["3"], None, "3##1", 1)


def test_default_with_a_fraction_is_said_with_its_point(call):
    c = to_confirm(call, "42#")
    c.played()
    assert c.press("#") == [
        CancelTimer(),
        Play(
            (
                "you_entered_category",
                "digit_4",
                "digit_2",
                "you_entered_value",
                *("digit_0", "point", "digit_5", "digit_0"),
                "confirm",
            )
        ),
    ]


def test_whole_default_from_a_float_is_said_without_point_zero():
    # settings hold values as floats; Decimal(str(100.0)) is Decimal("100.0")
    menu = Menu(MenuConfig({"5": Category("5", "x", Decimal("100.0"))}))
    menu.handle(Start())
    menu.handle(Digit("5"))
    assert menu.handle(Digit("#")) == [CancelTimer(), Play(("ask_value",))]
    assert menu.handle(Digit("#")) == [
        StopPlayback(),
        Play(("you_entered_category", *d("5"), "you_entered_value", *d("100"), "confirm")),
    ]


# -- wrong codes, silence, timeouts -------------------------------------------


def test_unknown_code_then_the_right_one(call):
    c = listening(call)
    assert c.keys("7#") == [[NEXT], [CancelTimer(), Play(("unknown_category", "ask_category"))]]
    assert c.menu.state is State.PROMPTING_ENTRY
    assert c.played() == [FIRST]
    assert c.keys("3#") == [[NEXT], [CancelTimer(), Play(("ask_value",))]]
    c.played()
    c.keys("1500#")
    c.played()
    c.press("1")
    assert c.played() == [HangUp()]
    assert c.saved == Save(result("confirmed", c.categories["3"], Decimal("1500"), "7#3#1500#1", 2))


def test_codes_are_matched_literally(call):
    c = listening(call)
    # "03" is not "3", and "4" is only the start of "42"
    assert c.keys("03#")[-1] == [CancelTimer(), Play(("unknown_category", "ask_category"))]
    c.played()
    assert c.keys("4#")[-1] == [CancelTimer(), Play(("unknown_category", "ask_category"))]
    c.played()
    assert c.keys("42#")[-1] == [CancelTimer(), Play(("ask_value",))]


def test_star_inside_a_code_makes_it_unknown(call):
    c = listening(call)
    assert c.keys("3*#") == [
        [NEXT],
        [NEXT],
        [CancelTimer(), Play(("unknown_category", "ask_category"))],
    ]


def test_wrong_codes_until_max_attempts_end_incomplete(call):
    c = listening(call)
    assert c.keys("7#")[-1] == [CancelTimer(), Play(("unknown_category", "ask_category"))]
    c.played()
    assert c.keys("8#")[-1] == [CancelTimer(), Play(("unknown_category", "ask_category"))]
    c.played()
    assert c.keys("9#")[-1] == [CancelTimer(), ANY_SAVE, Play(("not_saved",))]
    assert c.menu.state is State.CLOSING
    assert c.played() == [HangUp()]
    assert c.saved == Save(result("incomplete", None, None, "7#8#9#", 3))


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_max_attempts_is_the_number_of_tries(call, max_attempts):
    c = call(max_attempts=max_attempts)
    c.start()
    for _ in range(max_attempts - 1):
        c.played()
        assert c.keys("7#")[-1] == [CancelTimer(), Play(("unknown_category", "ask_category"))]
    c.played()
    assert c.keys("7#")[-1] == [CancelTimer(), ANY_SAVE, Play(("not_saved",))]
    c.played()
    assert c.saved.result.attempts == max_attempts
    assert c.saved.result.status == "incomplete"


def test_silence_until_first_digit_timeout_then_success(call):
    c = call()
    assert c.start() == [Play(("greeting", "ask_category"))]
    assert c.played() == [FIRST]
    assert c.timeout() == [Play(("no_input", "ask_category"))]
    assert c.played() == [FIRST]
    c.keys("3#")
    c.played()
    c.keys("1500#")
    assert saved_on_confirm(c) == result(
        "confirmed", c.categories["3"], Decimal("1500"), "3#1500#1", 2
    )


def test_silence_throughout_ends_incomplete(call):
    c = listening(call)
    assert c.timeout() == [Play(("no_input", "ask_category"))]
    c.played()
    assert c.timeout() == [Play(("no_input", "ask_category"))]
    c.played()
    assert c.timeout() == [ANY_SAVE, Play(("not_saved",))]
    assert c.played() == [HangUp()]
    assert c.saved == Save(result("incomplete", None, None, "", 3))


def test_terminator_alone_for_the_category_is_no_input(call):
    c = listening(call)
    assert c.press("#") == [CancelTimer(), Play(("no_input", "ask_category"))]


def test_silence_on_the_value_keeps_the_category(call):
    c = to_confirm(call, "3#")
    c.played()
    assert c.timeout() == [Play(("no_input", "ask_value"))]
    c.played()
    c.timeout()
    c.played()
    assert c.timeout() == [ANY_SAVE, Play(("not_saved",))]
    c.played()
    assert c.saved.result == result("incomplete", c.categories["3"], None, "3#", 3)


def test_a_timeout_with_keys_counts_as_entered(call):
    c = listening(call)
    c.press("3")
    # no CancelTimer: the timer just fired
    assert c.timeout() == [Play(("ask_value",))]
    c.played()
    c.keys("15")
    assert c.timeout() == [Play((*SAID_3, "you_entered_value", "digit_1", "digit_5", "confirm"))]
    assert saved_on_confirm(c) == result("confirmed", c.categories["3"], Decimal("15"), "3151", 1)


def test_a_timeout_with_a_wrong_code_is_an_unknown_code(call):
    c = listening(call)
    c.press("7")
    assert c.timeout() == [Play(("unknown_category", "ask_category"))]


def test_stale_timer_tokens_are_ignored(call):
    c = call()
    c.start()
    (first,) = c.played()
    (second,) = c.press("3")
    assert c.send(TimerFired(first.token)) == []  # replaced by `second`
    assert c.menu.state is State.COLLECTING_ENTRY
    assert c.press("#") == [CancelTimer(), Play(("ask_value",))]
    assert c.send(TimerFired(second.token)) == []  # cancelled
    assert c.send(TimerFired(999)) == []  # never issued
    assert c.menu.state is State.PROMPTING_ENTRY
    (third,) = c.played()
    assert c.send(TimerFired(third.token)) == [Play(("no_input", "ask_value"))]
    assert c.send(TimerFired(third.token)) == []  # fires once


# -- barge-in and restart ------------------------------------------------------


def test_a_key_during_the_greeting_stops_it_first(call):
    c = call()
    c.start()
    assert c.press("3") == [StopPlayback(), NEXT]
    assert c.menu.state is State.COLLECTING_ENTRY
    assert c.press("#") == [CancelTimer(), Play(("ask_value",))]
    # the terminator alone barges into the value question: the default value
    assert c.press("#") == [
        StopPlayback(),
        Play((*SAID_3, "you_entered_value", "no_value", "confirm")),
    ]
    # and the answer barges into the read-back
    assert c.press("1") == [StopPlayback(), ANY_SAVE, Play(("saved",))]
    c.played()
    assert c.saved.result == result("confirmed", c.categories["3"], None, "3##1", 1)


def test_barge_in_with_a_full_entry_while_the_question_plays(call):
    c = call()
    c.start()
    assert c.keys("3#") == [[StopPlayback(), NEXT], [CancelTimer(), Play(("ask_value",))]]
    assert c.keys("2") == [[StopPlayback(), NEXT]]


def test_a_key_during_a_reprompt_barges_in(call):
    c = listening(call)
    c.keys("7#")  # unknown_category + ask_category playing
    assert c.press("3") == [StopPlayback(), NEXT]


def test_star_first_restarts_the_entry_without_using_an_attempt(call):
    c = listening(call)
    assert c.press("*") == [CancelTimer(), Play(("ask_category",))]
    assert c.menu.state is State.PROMPTING_ENTRY
    assert c.press("*") == [StopPlayback(), Play(("ask_category",))]  # during the prompt
    c.played()
    c.keys("3#")
    c.played()
    c.keys("15")
    # only the first key restarts; after digits `*` is the decimal point
    assert c.press("*") == [NEXT]
    c.timeout()
    assert saved_on_confirm(c) == result(
        "confirmed", c.categories["3"], Decimal("15"), "**3#15*1", 1
    )


def test_star_restart_of_the_value_asks_the_value_again(call):
    c = to_confirm(call, "3#")
    c.played()
    assert c.press("*") == [CancelTimer(), Play(("ask_value",))]
    assert c.menu.state is State.PROMPTING_ENTRY


def test_restarts_beyond_the_free_ones_use_attempts(call):
    c = call(max_attempts=2)
    c.start()
    for _ in range(6):  # 3 free restarts per allowed attempt
        assert c.press("*")[-1] == Play(("ask_category",))
    assert c.press("*") == [StopPlayback(), Play(("ask_category",))]  # charged: attempt 2
    assert c.press("*") == [StopPlayback(), ANY_SAVE, Play(("not_saved",))]  # no attempt left
    c.played()
    assert c.saved.result == result("incomplete", None, None, "*" * 8, 2)


def test_a_stuck_star_key_cannot_loop_forever(call):
    c = call()
    c.start()
    for _ in range(100):
        c.press("*")
        if c.menu.state is State.CLOSING:
            break
    assert c.menu.state is State.CLOSING
    c.played()
    assert c.saved.result.attempts == 3


# -- invalid values ---------------------------------------------------------------


def test_second_star_is_an_invalid_value(call):
    c = to_confirm(call, "3#")
    c.played()
    assert c.keys("15*5*0#") == [[NEXT]] * 6 + [
        [CancelTimer(), Play(("invalid_value", "ask_value"))]
    ]
    c.played()
    c.keys("15#")
    assert saved_on_confirm(c) == result(
        "confirmed", c.categories["3"], Decimal("15"), "3#15*5*0#15#1", 2
    )


def test_more_than_twelve_digits_is_an_invalid_value(call):
    c = to_confirm(call, "3#")
    c.played()
    assert c.keys("1234567890123#")[-1] == [CancelTimer(), Play(("invalid_value", "ask_value"))]
    c.played()
    assert c.keys("123456*1234567#")[-1] == [CancelTimer(), Play(("invalid_value", "ask_value"))]


def test_invalid_values_until_max_attempts_keep_the_category(call):
    c = to_confirm(call, "3#")
    for _ in range(2):
        c.played()
        assert c.keys("1**#")[-1] == [CancelTimer(), Play(("invalid_value", "ask_value"))]
    c.played()
    assert c.keys("1**#")[-1] == [CancelTimer(), ANY_SAVE, Play(("not_saved",))]
    c.played()
    assert c.saved.result == result("incomplete", c.categories["3"], None, "3#1**#1**#1**#", 3)


def test_the_attempt_budget_is_shared_by_the_whole_call(call):
    c = listening(call)
    c.keys("7#")  # attempt 1 fails
    c.played()
    c.keys("3#")  # attempt 2: the category is accepted
    c.played()
    assert c.keys("1**#")[-1] == [CancelTimer(), Play(("invalid_value", "ask_value"))]  # 3
    c.played()
    assert c.keys("1**#")[-1] == [CancelTimer(), ANY_SAVE, Play(("not_saved",))]
    c.played()
    assert c.saved.result == result("incomplete", c.categories["3"], None, "7#3#1**#1**#", 3)


# -- confirmation --------------------------------------------------------------


def test_confirm_2_starts_over_and_uses_an_attempt(call):
    c = to_confirm(call)
    c.played()
    assert c.press("2") == [CancelTimer(), Play(("ask_category",))]
    assert c.menu.state is State.PROMPTING_ENTRY
    c.played()
    c.keys("2#")
    c.played()
    assert c.keys("50#")[-1] == [
        CancelTimer(),
        Play(("you_entered_category", "digit_2", "you_entered_value", *d("50"), "confirm")),
    ]
    assert saved_on_confirm(c) == result(
        "confirmed", c.categories["2"], Decimal("50"), "3#1500#22#50#1", 2
    )


def test_confirm_2_clears_the_answers(call):
    c = to_confirm(call)
    c.press("2")  # barges into the read-back
    assert c.hangup() == [Save(result("incomplete", None, None, "3#1500#2", 2))]


def test_confirm_2_on_the_last_attempt_ends_incomplete_with_the_answers(call):
    c = to_confirm(call)
    c.press("2")
    c.played()
    c.keys("3#")
    c.played()
    c.keys("1500#")
    assert c.press("2") == [StopPlayback(), Play(("ask_category",))]  # attempt 3
    c.played()
    c.keys("3#")
    c.played()
    c.keys("1500#")
    c.played()
    assert c.press("2") == [CancelTimer(), ANY_SAVE, Play(("not_saved",))]
    c.played()
    assert c.saved.result == result(
        "incomplete", c.categories["3"], Decimal("1500"), "3#1500#23#1500#23#1500#2", 3
    )


@pytest.mark.parametrize("key", ["0", "3", "9", "*", "#"])
def test_other_keys_ask_to_confirm_again(call, key):
    c = to_confirm(call)
    assert c.press(key) == [StopPlayback(), Play(("confirm",))]  # during the read-back
    assert c.played() == [FIRST]
    assert c.press(key) == [CancelTimer(), Play(("confirm",))]
    c.played()
    assert c.press("1") == [CancelTimer(), ANY_SAVE, Play(("saved",))]
    c.played()
    assert c.saved.result.status == "confirmed"
    assert c.saved.result.attempts == 1


def test_confirm_silence_ends_incomplete_with_the_answers(call):
    c = to_confirm(call)
    assert c.played() == [FIRST]
    assert c.timeout() == [Play(("confirm",))]
    assert c.played() == [FIRST]
    assert c.timeout() == [Play(("confirm",))]
    assert c.played() == [FIRST]
    assert c.timeout() == [ANY_SAVE, Play(("not_saved",))]
    assert c.played() == [HangUp()]
    assert c.saved == Save(result("incomplete", c.categories["3"], Decimal("1500"), "3#1500#", 1))


def test_confirm_wrong_keys_are_bounded_too(call):
    c = to_confirm(call)
    assert c.press("5") == [StopPlayback(), Play(("confirm",))]
    assert c.press("5") == [StopPlayback(), Play(("confirm",))]
    assert c.press("5") == [StopPlayback(), ANY_SAVE, Play(("not_saved",))]
    assert c.press("1") == []  # the goodbye is not interrupted
    c.played()
    # The key pressed during the goodbye came after the save: not in the log.
    assert c.saved.result == result(
        "incomplete", c.categories["3"], Decimal("1500"), "3#1500#555", 1
    )


def test_confirm_asks_are_counted_per_read_back(call):
    c = to_confirm(call)
    c.press("5")
    c.press("5")  # confirm asked 3 times
    c.press("2")  # start over
    c.played()
    c.keys("3#")
    c.played()
    c.keys("1500#")
    assert c.press("5") == [StopPlayback(), Play(("confirm",))]  # a fresh budget


# -- hang-ups --------------------------------------------------------------------


def test_hangup_before_start(call):
    c = call()
    assert c.hangup() == [Save(result("incomplete", None, None, "", 0))]
    assert c.start() == []


def test_hangup_mid_entry_saves_the_partial_data(call):
    c = listening(call)
    c.keys("3#15")
    assert c.hangup() == [Save(result("incomplete", c.categories["3"], None, "3#15", 1))]
    assert c.menu.finished and c.menu.state is State.DONE
    assert c.menu.result == c.saved.result


def test_hangup_during_the_read_back_keeps_the_answers(call):
    c = to_confirm(call, "3#15*5#")
    assert c.hangup() == [
        Save(result("incomplete", c.categories["3"], Decimal("15.5"), "3#15*5#", 1))
    ]


def test_hangup_while_saved_plays_is_still_confirmed(call):
    c = to_confirm(call)
    c.press("1")
    assert c.hangup() == []  # saved before "saved" played
    assert c.saved == Save(result("confirmed", c.categories["3"], Decimal("1500"), "3#1500#1", 1))


def test_hangup_while_the_save_is_pending_saves_nothing_more(call):
    c = to_confirm(call, auto_store=False)
    c.press("1")
    assert c.menu.state is State.SAVING
    assert c.hangup() == []
    assert c.menu.finished and c.saved.result.status == "confirmed"


def test_hangup_while_not_saved_plays_is_incomplete(call):
    c = call(max_attempts=1)
    c.start()
    c.keys("7#")
    assert c.menu.state is State.CLOSING
    assert c.hangup() == []
    assert c.saved == Save(result("incomplete", None, None, "7#", 1))


def test_after_save_nothing_happens(call):
    c = to_confirm(call)
    c.press("1")
    c.played()
    for event in (Hangup(), Start(), Digit("1"), PromptFinished(), TimerFired(c.last_token)):
        assert c.send(event) == []
    assert len(c.saves) == 1


def test_after_a_hangup_save_nothing_happens(call):
    c = call()
    c.start()
    c.hangup()
    for event in (Hangup(), Digit("3"), PromptFinished(), TimerFired(c.last_token), Start()):
        assert c.send(event) == []
    assert c.menu.result.digits == ""


# -- configuration variants --------------------------------------------------------


def test_without_category_only_the_value_is_asked(call):
    c = call(ask_category=False)
    assert c.start() == [Play(("greeting", "ask_value"))]
    c.played()
    assert c.keys("1500#")[-1] == [CancelTimer(), Play((*SAID_1500, "confirm"))]
    assert saved_on_confirm(c) == result("confirmed", None, Decimal("1500"), "1500#1", 1)


def test_without_category_the_terminator_alone_is_no_value(call):
    c = call(ask_category=False)
    c.start()
    assert c.press("#") == [StopPlayback(), Play(("you_entered_value", "no_value", "confirm"))]


def test_without_category_confirm_2_asks_the_value_again(call):
    c = call(ask_category=False)
    c.start()
    c.keys("5#")
    assert c.press("2") == [StopPlayback(), Play(("ask_value",))]


def test_without_value_the_category_default_is_the_value(call):
    c = call(ask_value=False)
    assert c.start() == [Play(("greeting", "ask_category"))]
    c.played()
    assert c.keys("2#")[-1] == [
        CancelTimer(),
        Play(("you_entered_category", "digit_2", "confirm")),
    ]
    assert saved_on_confirm(c) == result("confirmed", c.categories["2"], Decimal("100"), "2#1", 1)


def test_without_confirmation_the_read_back_ends_with_saved(call):
    c = listening(call, confirm=False)
    c.keys("3#")
    c.played()
    assert c.keys("1500#")[-1] == [CancelTimer(), ANY_SAVE, Play((*SAID_3, *SAID_1500, "saved"))]
    assert c.menu.state is State.CLOSING
    assert c.press("2") == []  # nothing to correct any more (and saved already)
    assert c.played() == [HangUp()]
    assert c.saved == Save(result("confirmed", c.categories["3"], Decimal("1500"), "3#1500#", 1))


def test_category_only_without_confirmation(call):
    c = call(ask_value=False, confirm=False)
    c.start()
    assert c.keys("42#") == [
        [StopPlayback(), NEXT],
        [NEXT],
        [CancelTimer(), ANY_SAVE, Play(("you_entered_category", "digit_4", "digit_2", "saved"))],
    ]
    c.played()
    assert c.saved.result == result("confirmed", c.categories["42"], Decimal("0.50"), "42#", 1)


def test_custom_timeouts_are_used(call):
    c = call(first_digit_timeout_s=10.0, digit_timeout_s=2.5)
    c.start()
    assert c.played() == [StartTimer(10.0, ANY)]
    assert c.press("3") == [StartTimer(2.5, ANY)]


def test_another_terminator(call):
    c = listening(call, terminator="A")
    assert c.press("#") == []  # not the terminator, so just a logged key
    assert c.keys("3A") == [[NEXT], [CancelTimer(), Play(("ask_value",))]]
    c.played()
    c.keys("15A")
    c.played()
    c.press("1")
    c.played()
    assert c.saved.result.digits == "#3A15A1"


# -- keys that are not menu keys -----------------------------------------------------


@pytest.mark.parametrize("key", ["A", "B", "C", "D"])
def test_a_to_d_do_nothing_but_are_logged(call, key):
    c = call()
    c.start()
    assert c.press(key) == []  # no barge-in
    assert c.menu.state is State.PROMPTING_ENTRY
    c.played()
    c.press("3")
    assert c.press(key) == []  # no timer restart
    c.press("#")
    assert c.hangup() == [Save(result("incomplete", c.categories["3"], None, f"{key}3{key}#", 1))]


@pytest.mark.parametrize("key", ["", "a", "x", "11", " ", "E", "٣"])
def test_non_keypad_strings_are_ignored_and_not_logged(call, key):
    c = call()
    c.start()
    assert c.press(key) == []
    c.played()
    assert c.press(key) == []
    assert c.menu.state is State.COLLECTING_ENTRY
    assert c.hangup() == [Save(result("incomplete", None, None, "", 1))]


def test_keys_before_start_are_ignored_and_not_logged(call):
    c = call()
    assert c.press("3") == []
    assert c.menu.state is State.IDLE
    c.start()
    assert c.hangup()[0].result.digits == ""


def test_events_that_mean_nothing_now_are_ignored(call):
    c = call()
    assert c.send(PromptFinished()) == []
    assert c.send(TimerFired(1)) == []
    c.start()
    assert c.start() == []
    c.played()
    assert c.send(PromptFinished()) == []  # nothing plays while collecting
    assert c.menu.state is State.COLLECTING_ENTRY
