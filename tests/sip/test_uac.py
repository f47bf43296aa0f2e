"""The client side (`UserAgent.invite`, used by `voicebot simulate-call`) against our own UAS."""

from __future__ import annotations

import asyncio

import pytest

from tests.sip.handoff import each_call
from voicebot.settings import SipSettings
from voicebot.sip.call import CallCancelled, CallFailed, IncomingCall
from voicebot.sip.user_agent import UserAgent


async def unused(call: IncomingCall) -> None:
    raise AssertionError


async def pair(app) -> tuple[UserAgent, UserAgent]:
    bot = UserAgent(SipSettings(bind_port=0), each_call(app))
    phone = UserAgent(SipSettings(bind_port=0, user_agent="voicebot-simulator"), each_call(unused))
    await bot.start()
    await phone.start()
    return bot, phone


async def test_call_answered_keys_sent_as_info_then_hangup() -> None:
    keys: list[str] = []
    bot_ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    headers_seen: dict[str, str | None] = {}

    async def app(call: IncomingCall) -> None:
        headers_seen["manager"] = call.header("X-Manager")
        call.on_info_key = keys.append
        await call.answer("127.0.0.1", 31000)
        bot_ended.set_result(await call.ended)

    bot, phone = await pair(app)
    try:
        host, port = bot.local_address
        call = phone.invite(
            f"sip:bot@{host}:{port}",
            from_user="201",
            headers={"X-Manager": "201"},
            local_rtp=("127.0.0.1", 31002),
            codecs=["PCMA"],
        )
        media = await call.wait_answered(3)
        assert (media.codec_name, media.payload_type, media.telephone_event_pt) == ("PCMA", 8, 101)
        assert media.remote_rtp == ("127.0.0.1", 31000)
        for key in "3#":
            await call.send_info_key(key)
        await call.hangup()
        assert await asyncio.wait_for(bot_ended, 2) == "remote_bye"
        assert call.ended.result() == "local_bye"
        assert keys == ["3", "#"] and headers_seen["manager"] == "201"
    finally:
        await phone.stop()
        await bot.stop()


async def test_cancel_while_ringing() -> None:
    ringing, cancelled, handled = asyncio.Event(), asyncio.Event(), asyncio.Event()
    answered: dict[str, object] = {}

    async def slow(call: IncomingCall) -> None:
        ringing.set()
        await cancelled.wait()  # the app answers only after the CANCEL came
        try:
            await call.answer("127.0.0.1", 31004)
        except CallCancelled:
            answered["raised"] = True
        handled.set()

    bot, phone = await pair(slow)
    try:
        call = phone.invite(
            "{}:{}".format(*bot.local_address), from_user="201", local_rtp=("127.0.0.1", 31006)
        )
        await asyncio.wait_for(ringing.wait(), 2)
        await call.cancel()
        with pytest.raises(CallFailed) as failure:
            await call.wait_answered(2)
        assert failure.value.status == 487
        assert call.ended.result() == "cancelled"
        cancelled.set()
        await asyncio.wait_for(handled.wait(), 2)
        assert answered == {"raised": True}
    finally:
        await phone.stop()
        await bot.stop()


async def test_rejected_call_raises_with_status() -> None:
    async def busy(call: IncomingCall) -> None:
        await call.reject(486)

    bot, phone = await pair(busy)
    try:
        call = phone.invite(
            "{}:{}".format(*bot.local_address), from_user="201", local_rtp=("127.0.0.1", 31008)
        )
        with pytest.raises(CallFailed) as failure:
            await call.wait_answered(2)
        assert failure.value.status == 486
    finally:
        await phone.stop()
        await bot.stop()


async def test_shutdown_byes_active_calls() -> None:
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    answered = asyncio.Event()

    async def app(call: IncomingCall) -> None:
        await call.answer("127.0.0.1", 31010)
        answered.set()
        ended.set_result(await call.ended)

    bot, phone = await pair(app)
    try:
        call = phone.invite(
            "{}:{}".format(*bot.local_address), from_user="201", local_rtp=("127.0.0.1", 31012)
        )
        await call.wait_answered(2)
        await asyncio.wait_for(answered.wait(), 2)
        await bot.stop()
        assert await asyncio.wait_for(ended, 1) == "shutdown"
        assert await asyncio.wait_for(call.ended, 1) == "remote_bye"
    finally:
        await phone.stop()
