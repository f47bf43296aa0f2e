"""What `voicebot run` must have before it answers anything, each missing
piece told as one line naming the address and the setting (issue 6 item 12):
a bot that starts without its ports would sit there unable to take a call.
"""

from __future__ import annotations

import errno
import os
import socket


class StartupError(Exception):
    """The bot cannot start; the message is the one line an operator reads."""


def listen_failed(what: str, host: str, port: int, settings: str, error: OSError) -> StartupError:
    """`what` could not bind `host:port` (named by `settings`)."""
    if error.errno == errno.EADDRINUSE:
        reason = "address already in use (another process holds it)"
    elif error.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    elif error.errno == errno.EADDRNOTAVAIL:
        reason = "no such address on this machine"
    elif error.errno is not None:
        reason = os.strerror(error.errno).lower()
    else:
        reason = str(error)
    return StartupError(
        f"{what} cannot listen on {host}:{port}: {reason}; expected a free address in {settings}"
    )


def free_rtp_ports(host: str, min_port: int, max_port: int) -> int:
    """How many even ports of the range this process can bind right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    free = 0
    for port in range(min_port + min_port % 2, max_port + 1, 2):
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            free += 1
    return free


def check_rtp_range(host: str, min_port: int, max_port: int) -> int:
    """The free even ports of the RTP range; StartupError when there is none."""
    free = free_rtp_ports(host, min_port, max_port)
    if free == 0:
        raise StartupError(
            f"RTP ports {min_port}-{max_port} on {host}: every one is taken by another process,"
            " so no call could have audio; expected a free range in sip.rtp_port_min /"
            " sip.rtp_port_max (VOICEBOT_SIP__RTP_PORT_MIN / VOICEBOT_SIP__RTP_PORT_MAX)"
        )
    return free
