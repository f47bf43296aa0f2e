#!/usr/bin/env bash
# Sets up a virtualenv (.venv) and runs the bot on embedded defaults:
# peer mode on 127.0.0.1:5062, SQLite under ./data, HTTP on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
exec .venv/bin/voicebot run "$@"
