#!/usr/bin/env bash
# Set up, then serve the whole app on the embedded default (tiny CPU models, SQLite, ./var/results).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}  # Ray 2.60 enables token auth by default; this is a local, loopback-only cluster
PORT=$(.venv/bin/python -c "import yaml;print(yaml.safe_load(open('configs/local.yaml'))['http_options']['port'])")
echo "==> starting Ray Serve; the API will listen on http://127.0.0.1:${PORT} (GET /healthz answers 200 when ready, Ctrl-C stops)"
exec .venv/bin/serve run configs/local.yaml
