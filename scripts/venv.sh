#!/usr/bin/env bash
# Create .venv and install Shoal with its test tools (idempotent; quick when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.shoal-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q -U pip setuptools wheel
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
