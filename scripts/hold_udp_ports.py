#!/usr/bin/env python3
"""Hold random UDP ports, as a busy machine's other programs do, so the test
suite can be run under port pressure (issue 8: the tests take their ports
from the OS, never from a fixed window).

    python3 scripts/hold_udp_ports.py --count 3000 --range 20000-45000 &
    ./scripts/test.sh; kill %1

Binds 127.0.0.1 only; holds the ports until killed (SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import socket
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="ports to hold (default 3000)")
    parser.add_argument("--range", default="20000-45000", help="LO-HI (default 20000-45000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = parser.parse_args()
    lo, hi = (int(part) for part in args.range.split("-", 1))
    rng = random.Random(args.seed)
    held: list[socket.socket] = []
    for port in rng.sample(range(lo, hi + 1), min(args.count, hi - lo + 1)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()  # taken already: somebody else holds it, which is as good
            continue
        held.append(sock)
    print(f"holding {len(held)} UDP ports in {lo}-{hi}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
