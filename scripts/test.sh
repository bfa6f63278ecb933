#!/usr/bin/env bash
# The test command: venv, services (PostgreSQL, Redis, the Label Studio install), then pytest.
# Tests start their own Label Studio server, Celery workers and local sites on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
scripts/services.sh
if [ -x scripts/labelstudio.sh ]; then
  scripts/labelstudio.sh install
  scripts/labelstudio.sh template
fi
# the trainer's report test opens the HTML report in headless Chromium
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
