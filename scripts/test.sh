#!/usr/bin/env bash
# One command that sets up and runs the tests on a fresh Debian/Ubuntu machine:
# installs the Debian packages the integration tests drive when missing (SIPp
# from sip-tester, sox, espeak-ng, baresip, tshark; chromium for the dashboard's
# browser test; systemd for systemd-analyze, which checks config/voicebot.service),
# creates .venv with voicebot and its test extras, then runs ruff, mypy
# (--strict on the pure ivr/ and webhooks/, plain on voicebot/) and the whole
# pytest suite, on parallel workers (pyproject's addopts; tests/turns.py).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v sox >/dev/null || need+=(sox)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v baresip >/dev/null || need+=(baresip)
command -v tshark >/dev/null || need+=(tshark)
command -v chromium >/dev/null || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy --strict ivr webhooks
.venv/bin/mypy voicebot
.venv/bin/python -m pytest -q "$@"
