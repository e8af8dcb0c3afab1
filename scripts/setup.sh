#!/usr/bin/env bash
# Create .venv (if needed), install the project with its test tools, and build the tiny models.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.vividflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing dependencies (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
echo "==> building tiny offline models into .cache/models"
.venv/bin/python -m pipelines.tiny --out .cache/models 2>&1 | grep -v -E "Warning|warn|torchao|register_constant|Writing model shards" || true
