#!/usr/bin/env bash
# The peer for side-by-side benchmarks: pyqlib in its own virtualenv (.venv-qlib), kept out of
# qonline's runtime dependencies and pins.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3.11}"; command -v "$PY" >/dev/null || PY=python3
[ -x .venv-qlib/bin/python ] || "$PY" -m venv .venv-qlib
.venv-qlib/bin/python -c "import qlib" 2>/dev/null || .venv-qlib/bin/pip install --quiet "pyqlib==0.9.7"
