"""A bare UDP socket playing a SIP peer (a PBX, a stranger, a victim) on loopback.

Any 127.0.0.0/8 address can be bound on Linux, so a test can be several hosts.
"""

from __future__ import annotations

import asyncio
import socket

from voicebot.sip.message import SipResponse, parse_message


class UdpPeer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def send(self, data: bytes, destination: tuple[str, int]) -> None:
        self.sock.sendto(data, destination)

    async def recv(self, timeout: float = 1.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)

    async def response(self, timeout: float = 1.0) -> SipResponse:
        message = parse_message(await self.recv(timeout))
        assert isinstance(message, SipResponse), message
        return message

    async def final(self, timeout: float = 2.0) -> SipResponse:
        """The next final (>= 200) response; provisional ones are skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            response = await self.response(max(0.01, deadline - loop.time()))
            if response.status >= 200:
                return response

    async def drain(self, quiet: float = 0.3) -> list[bytes]:
        """Everything that arrives until `quiet` seconds pass with nothing."""
        got: list[bytes] = []
        while True:
            try:
                got.append(await self.recv(quiet))
            except TimeoutError:
                return got

    async def silent(self, timeout: float = 0.3) -> bool:
        return not await self.drain(timeout)

    def close(self) -> None:
        self.sock.close()
