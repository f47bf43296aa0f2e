"""Baseline for bench/concurrent_calls.py: a bare stock pyVoIP 1.6.8 phone that answers calls.

    python bench/stock_pyvoip_answer.py --server-port P --sip-port S \\
        --rtp-low 22000 --rtp-high 23999 --digits-log FILE --ready-file FILE

This is what a voice menu written the way the pyVoIP documentation shows
looks like: one `VoIPPhone`, a `callCallback` run in its own thread per call
that answers, writes audio with `call.write_audio` (1 s of a quiet 8-bit tone
each second, as the examples pace it), polls `call.get_dtmf()` and, when the
caller hangs up, appends ``<Call-ID> <digits heard>`` to ``--digits-log``.

Stock pyVoIP has no registration-free mode: `VoIPPhone.start()` REGISTERs
with ``--server``:``--server-port`` and blocks (30 s) until a registrar
answers; then it sends every SIP response to that same address, not to the
Via. The benchmark therefore answers the REGISTER on the port the SIPp caller
will use next (see bench/README.md), so responses reach the caller.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from pathlib import Path

from pyVoIP.VoIP import CallState, VoIPCall, VoIPPhone

RATE = 8000


def _tone(seconds: float = 1.0, hz: float = 425.0, amplitude: int = 8) -> bytes:
    """Unsigned 8-bit linear audio, what `write_audio` expects (quiet, so nearly silence)."""
    n = int(RATE * seconds)
    return bytes(128 + round(amplitude * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="127.0.0.1")
    p.add_argument("--server-port", type=int, required=True)
    p.add_argument("--sip-port", type=int, required=True)
    p.add_argument("--ip", default="127.0.0.1")
    p.add_argument("--rtp-low", type=int, default=22000)
    p.add_argument("--rtp-high", type=int, default=23999)
    p.add_argument("--digits-log", type=Path, required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    p.add_argument("--max-seconds", type=float, default=600.0, help="exit on its own after this")
    args = p.parse_args()

    tone = _tone()
    log_lock = threading.Lock()
    log = args.digits_log.open("a", encoding="utf-8")

    def answer(call: VoIPCall) -> None:
        heard: list[str] = []
        try:
            call.answer()
            next_write = time.monotonic()
            while call.state == CallState.ANSWERED:
                now = time.monotonic()
                if now >= next_write:
                    call.write_audio(tone)
                    next_write += len(tone) / RATE
                key = call.get_dtmf()
                if key:
                    heard.append(key)
                    continue
                time.sleep(0.1)
        except Exception as exc:  # record, never kill the phone
            heard.append(f"!{type(exc).__name__}")
        finally:
            with log_lock:
                log.write(f"{call.call_id} {''.join(heard) or '-'}\n")
                log.flush()

    phone = VoIPPhone(
        args.server,
        args.server_port,
        "bench",
        "bench",
        myIP=args.ip,
        callCallback=answer,
        sipPort=args.sip_port,
        rtpPortLow=args.rtp_low,
        rtpPortHigh=args.rtp_high,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    phone.start()  # REGISTER: blocks until the registrar answers
    args.ready_file.write_text("ready\n", encoding="utf-8")
    stop.wait(args.max_seconds)
    with log_lock:
        log.flush()
    # phone.stop() would BYE every call and de-REGISTER (to an address nobody
    # answers any more): the benchmark is over, so leave without it.
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    import os

    code = main()
    os._exit(code)  # pyVoIP's non-daemon Timer threads would keep the process alive
