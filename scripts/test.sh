#!/usr/bin/env bash
# The test command: venv, services (PostgreSQL, Redis, the Label Studio install), then pytest.
# Tests start their own Label Studio server, Celery workers and local sites on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
# Label Studio installs into its own venv; do it beside Shoal's own install, not after it
( scripts/labelstudio.sh install && scripts/labelstudio.sh template ) > .cache/labelstudio-setup.log 2>&1 &
ls_setup=$!
scripts/venv.sh
scripts/services.sh
# the trainer's report test and the serve browser tests (Playwright) run headless Chromium
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! wait "$ls_setup"; then
  echo "error: Label Studio setup failed:" >&2
  tail -n 40 .cache/labelstudio-setup.log >&2
  exit 1
fi
.venv/bin/ruff check .
# two pytest-xdist workers, each whole test file on one worker (its module fixtures and its
# timing stay together): most tests wait on servers, workers and timeouts, so two halve the run
# on two cores; SHOAL_TEST_WORKERS=0 runs everything in this one process
exec .venv/bin/python -m pytest -n "${SHOAL_TEST_WORKERS:-2}" --dist loadfile "$@"
