"""What `voicebot run` must have before it answers anything, each missing
piece told as one line naming the address and the setting (issue 6 item 12):
a bot that starts without its ports would sit there unable to take a call.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable
from dataclasses import dataclass


class StartupError(Exception):
    """The bot cannot start; the message is the one line an operator reads."""


def setting_pair(section: str, first: str, second: str) -> str:
    """`sip.bind_host / sip.bind_port (VOICEBOT_SIP__BIND_HOST / VOICEBOT_SIP__BIND_PORT)`."""
    env = f"VOICEBOT_{section.upper()}__"
    return f"{section}.{first} / {section}.{second} ({env}{first.upper()} / {env}{second.upper()})"


@dataclass(frozen=True)
class Listener:
    """What listens on an address, and the section and keys of its settings."""

    what: str
    section: str
    host_key: str = "host"
    port_key: str = "port"

    async def start(self, starting: Awaitable[object], host: str, port: int) -> None:
        """Await `starting`; a bind that fails is a StartupError naming the address."""
        try:
            await starting
        except OSError as error:
            settings = setting_pair(self.section, self.host_key, self.port_key)
            raise listen_failed(self.what, host, port, settings, error) from None


HTTP_LISTENER = Listener("the HTTP API", "http")
SIP_LISTENER = Listener("SIP (UDP)", "sip", "bind_host", "bind_port")


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
            " so no call could have audio; expected a free range in"
            f" {setting_pair('sip', 'rtp_port_min', 'rtp_port_max')}"
        )
    return free
