"""A caller that never ACKs the bot's 200 (issue 6 items 8 and 9), through the
whole app: the call ends with one warning line, no traceback, no failed
call counted, and its RTP port back in the pool. The fuzz found this one:
every un-ACKed INVITE logged `call.failed` with a CallEnded traceback."""

from __future__ import annotations

import functools

import pytest
from structlog.testing import capture_logs

from tests.integration.conftest import MakeBot
from tests.polling import until
from tests.sip.test_hostile_requests import request, sdp
from tests.sip.udp_peer import UdpPeer
from voicebot import app as app_module
from voicebot.sip.user_agent import UserAgent

T1 = 0.02  # the 200 is given up after 64·T1 = 1.3 s


async def test_never_acked_call_ends_in_one_warning_and_frees_its_port(
    make_bot: MakeBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "UserAgent", functools.partial(UserAgent, t1=T1))
    with capture_logs() as logs:
        bot = await make_bot()
        assert bot.user_agent is not None and bot._env is not None
        pbx = UdpPeer()
        try:
            pbx.send(
                request("INVITE", f"127.0.0.1:{pbx.address[1]}", call_id="noack", body=sdp()),
                bot.user_agent.local_address,
            )
            assert (await pbx.final(timeout=5.0)).status == 200
            assert len(bot._env.ports.in_use) == 1
            await until(
                lambda: not bot._calls and not bot._env.ports.in_use,
                10,
                what="the end of the un-ACKed call",
            )
        finally:
            pbx.close()
    assert bot.counters.failed == 0
    unconfirmed = [e for e in logs if e["event"] == "call.unconfirmed"]
    assert [(e["log_level"], e["reason"]) for e in unconfirmed] == [("warning", "ack_timeout")]
    bad = [e for e in logs if e["log_level"] in ("error", "critical") or e.get("exc_info")]
    assert not bad, bad
