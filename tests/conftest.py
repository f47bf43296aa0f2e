"""Suite-wide policy: locally a missing peer program skips its tests (with the
reason shown), but in CI (`CI` set) every peer the suite drives must be there,
so a green CI never hides tests that did not run."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import Scheduling

from tests import turns
from tests.running_apps import RunningApps
from tests.sipp_harness.runner import Sipp, SippNotFoundError
from tests.webhooks.webhooks_testkit import SECRET, Receiver

# Debian package → the program the tests run from it.
REQUIRED_IN_CI = {
    "sip-tester": "sipp",
    "sox": "sox",
    "espeak-ng": "espeak-ng",
    "baresip": "baresip",
    "tshark": "tshark",
    "chromium": "chromium",
    "systemd": "systemd-analyze",
}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not os.environ.get("CI"):
        return
    missing = [pkg for pkg, program in REQUIRED_IN_CI.items() if shutil.which(program) is None]
    if missing:
        raise pytest.UsageError(
            f"CI needs these Debian packages installed: {' '.join(missing)} (see .ci/run)"
        )
    if os.geteuid() != 0:
        raise pytest.UsageError("CI runs as root: SIPp's play_pcap_audio needs a raw socket")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: tests.turns.workers(), unless PYTEST_XDIST_AUTO_NUM_WORKERS says."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return turns.workers(config.args, config.invocation_params.dir)


TURNS = pytest.StashKey[turns.Turns]()


def pytest_configure(config: pytest.Config) -> None:
    """On an xdist worker, the run's turns (tests/turns.py) in the directory its
    workers share: the parent of this worker's base temporary directory."""
    if hasattr(config, "workerinput") and config.option.basetemp:
        config.stash[TURNS] = turns.Turns(Path(config.option.basetemp).parent)


def pytest_unconfigure(config: pytest.Config) -> None:
    if TURNS in config.stash:
        config.stash[TURNS].close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TURNS in config.stash:
        turns.alone_first(items, Path(config.option.basetemp).parent)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """pyproject's `--dist loadfile`, with the `alone` tests first (tests/turns.py)."""
    return turns.AloneFirst(config, log) if config.getvalue("dist") == "loadfile" else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    if TURNS not in item.config.stash:
        return (yield)
    with item.config.stash[TURNS].turn(item, nextitem):
        return (yield)


@pytest.fixture
def sipp(tmp_path: Path) -> Sipp:
    """The suite's one SIPp runner (tests/sipp_harness), working under `tmp_path`.
    Without `sipp` on PATH the test skips, and in CI it fails (the policy above)."""
    try:
        return Sipp(workdir=tmp_path / "sipp")
    except SippNotFoundError as missing:
        if os.environ.get("CI"):
            pytest.fail(str(missing))
        pytest.skip(str(missing))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver (the CRM stand-in) on 127.0.0.1 that verifies the
    Standard Webhooks signature of every delivery against SECRET."""
    hooks = Receiver([SECRET])
    await hooks.start()
    yield hooks
    await hooks.stop()


@pytest.fixture
async def running_apps(tmp_path: Path) -> AsyncIterator[RunningApps]:
    """Start apps with `await running_apps.start(settings)`; all stop after the test."""
    apps = RunningApps(tmp_path)
    yield apps
    await apps.stop()
