"""tests.ports: the ports tests hand to bots, SIPp and softphones are never ones
the kernel hands out on its own, and two xdist workers never pick the same one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.ports import (
    POOL_FLOOR,
    ephemeral_range,
    free_port,
    free_udp_span,
    pool,
    rtp_window,
    worker_slice,
)


def test_picks_lie_outside_the_kernels_ephemeral_range() -> None:
    low, high = ephemeral_range()
    picks = [free_port() for _ in range(50)] + [free_udp_span(5) for _ in range(20)]
    assert all(not low <= port <= high for port in picks)
    assert all(port >= POOL_FLOOR for port in picks)


def test_the_kernel_never_hands_out_a_picked_port() -> None:
    """The CI failure: a port picked for the bot went to someone's bind(port 0)."""
    picked = {free_port() for _ in range(20)}
    handed: set[int] = set()
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            handed.add(sock.getsockname()[1])
    assert handed and not handed & picked


def test_one_worker_does_not_repeat_a_port_until_it_has_gone_round() -> None:
    picks = [free_port() for _ in range(100)]
    assert len(set(picks)) == len(picks)


def test_spans_are_free_even_and_consecutive() -> None:
    low, high = rtp_window(calls=8, slack=4)
    assert low % 2 == 0 and high - low + 1 == 24
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", low))  # free when handed out


def test_workers_own_disjoint_slices_covering_the_pool() -> None:
    ports = pool((32768, 60999))
    assert ports == range(POOL_FLOOR, 32768)
    slices = [worker_slice(ports, f"gw{index}", "8") for index in range(8)]
    for index, one in enumerate(slices):
        assert len(one) >= 1400
        for other in slices[index + 1 :]:
            assert not set(one) & set(other)
    assert worker_slice(ports, None, None) == ports  # no xdist: the whole pool


def test_a_high_ephemeral_range_leaves_the_pool_below_it_or_above() -> None:
    assert pool((49152, 65535)) == range(POOL_FLOOR, 49152)
    assert pool((1024, 30000)) == range(30001, 65536)


def test_an_ephemeral_range_covering_everything_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="ip_local_port_range"):
        pool((1024, 65000))


def test_an_unreadable_range_falls_back_to_linuxs_default(tmp_path: Path) -> None:
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
    garbled = tmp_path / "range"
    garbled.write_text("not numbers\n")
    assert ephemeral_range(garbled) == (32768, 60999)
