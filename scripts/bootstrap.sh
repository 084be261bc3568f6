#!/usr/bin/env bash
# Create .venv/ at the repository root and install qonline with its pinned dependencies.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it skips a current install).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "qonline needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  PY="$(pick_python)"
  echo "bootstrap: creating .venv with $("$PY" --version)" >&2
  "$PY" -m venv .venv
fi

STAMP=.venv/.qonline-install
WANT="$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "bootstrap: installing qonline and its pinned dependencies (requirements.lock)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
  # PYTHONDONTWRITEBYTECODE=1 on some machines doubles import times: compile once at install time
  .venv/bin/python -m compileall -q -j 0 .venv/lib >/dev/null 2>&1 || true
  echo "$WANT" > "$STAMP"
fi

# telemetry off and start-up fixes for every process (STACK.md); quant_core.runtime_env sets them too
export GX_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true \
  PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
  PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
