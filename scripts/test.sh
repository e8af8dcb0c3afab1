#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, API, Redis contract, real Ray Serve end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if ! command -v redis-server >/dev/null 2>&1; then
  # The Redis job-store tests start their own server on a free loopback port; they skip, saying
  # why, only where none can be installed.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing redis-server (Debian package) for the job-store contract tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || echo "warning: could not install redis-server; Redis tests will be skipped"
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  # The web UI browser tests (tests/test_web_ui.py) drive Debian's Chromium through Playwright; they
  # skip, saying why, only where none can be installed.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (Debian package) for the web UI browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; web UI browser tests will be skipped"
  fi
fi
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the layering contracts in pyproject.toml
exec .venv/bin/python -m pytest "$@"
