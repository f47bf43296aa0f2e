"""Schemathesis against the served OpenAPI document.

A real `VoicebotApp` (aiohttp on 127.0.0.1, SQLite on disk, bearer token)
runs in a thread of its own, seeded with the report tests' calls; the
document is fetched from `/api/v1/openapi.json` over HTTP and every operation
in it gets generated requests (valid and not). The checks: no 5xx, every
response's status code and body are the ones the document declares, and
the content type matches, unknown methods answer 405 with a true Allow
header, and nothing under /api/v1 answers without the token.

It runs the `schemathesis` command line (its own pytest plugin does not
support pytest 9 yet) over every phase: examples, coverage, fuzzing and
stateful. The number of examples per operation is bounded (`MAX_EXAMPLES`) so the whole
file runs in well under a minute on a shared CI core.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.app.app_testkit import AUTH, KYIV_JOURNAL, TOKEN, api_session, app_settings
from tests.app.known_calls import seed_known_calls
from voicebot.app import VoicebotApp
from voicebot.settings import Settings

# Per operation and phase; ~15 s for the whole run on one shared core.
MAX_EXAMPLES = 40
# Fixed, so CI is reproducible; VOICEBOT_FUZZ_SEED=<n> explores elsewhere.
SEED = 20261025
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "ensure_resource_availability",
    # Left out, and why:
    # - positive_data_acceptance: some refusals no JSON Schema can state (an
    #   answer time on a call that was not answered, 2026-02-30, a value with
    #   five decimals); they answer 400 naming the field, as the issue asks.
    # - use_after_free: deleting a category is soft by design (history keeps
    #   reading it); GET /api/v1/categories/{code} shows it with deleted=true.
    # - object_level_authorization: one token, no per-user objects.
)
T = TypeVar("T")


class ThreadedApp:
    """The app on an event loop in its own thread, so the synchronous client
    schemathesis drives (requests) talks to it over a real socket."""

    def __init__(self, settings: Settings) -> None:
        self.app = VoicebotApp(settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-under-fuzz")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> str:
        self.thread.start()
        self.run(self.app.start())

        async def seed() -> None:
            async with api_session(self.app) as http:
                await seed_known_calls(self.app, http)

        self.run(seed())
        return f"http://127.0.0.1:{self.app.http_port}"

    def stop(self) -> None:
        try:
            self.run(self.app.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz")
    app = ThreadedApp(app_settings(root, journal=KYIV_JOURNAL))
    base = app.start()
    try:
        yield base
    finally:
        app.stop()


def test_schemathesis_finds_no_5xx_and_no_response_off_its_schema(
    served: str, tmp_path: Path
) -> None:
    with urllib.request.urlopen(
        urllib.request.Request(f"{served}/api/v1/openapi.json", headers=AUTH), timeout=10
    ) as response:
        document = json.load(response)
    operations = sum(len(methods) for methods in document["paths"].values())
    assert operations >= 13
    seed = os.environ.get("VOICEBOT_FUZZ_SEED", str(SEED))
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{served}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {TOKEN}",
            "--checks", ",".join(CHECKS),
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", seed,
            "--workers", "1",
            "--request-timeout", "10",
            "--generation-database", "none",
            "--no-color",
        ],
        cwd=tmp_path,  # its report and cache files stay out of the checkout
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis (seed {seed}) found problems:\n{output[-20000:]}"
    # Every documented operation was exercised, not just the document fetched.
    assert re.search(rf"Tested:\s+{operations}\b", output), output[-3000:]
