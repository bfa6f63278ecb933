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
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
