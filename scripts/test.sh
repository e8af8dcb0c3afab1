#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, API and a real local Ray Serve end-to-end test).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
exec .venv/bin/python -m pytest "$@"
